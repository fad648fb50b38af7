"""Tar shards under real processes: a run killed mid-epoch and resumed, two torchrun nodes.

Every sample's ``.cls`` is its own id, so the labels of a batch say which samples it held;
the launcher registers :class:`data_files.BatchRecorder`, which writes them for every step.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
from data_files import tracking_uri, write_shards  # noqa: E402

LAUNCHER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import data_files, toy_plugins
    from ssl_core import cli
    from ssl_core.plugins import get_plugins

    cli._load_plugins = lambda: get_plugins(
        extra=[("record", toy_plugins.Recorder()), ("batches", data_files.BatchRecorder())]
    )
    raise SystemExit(cli.main(sys.argv[1:]))
    """
)


def args(root: Path, urls: str, *extra: str) -> list[str]:
    return [
        "run",
        "method=byol",
        "backbone=test_resnet",
        "data=webdataset",
        f"data.urls={urls}",
        f"data.cache_dir={root}/cache",
        "data.image_size=32",
        "augment=kornia",
        "trainer.batch_size=4",
        "trainer.log_every=1",
        "trainer.device=cpu",
        "eval.knn=false",
        "optim.warmup_epochs=0",
        "byol.proj_hidden_dim=32",
        "byol.proj_dim=16",
        "byol.pred_hidden_dim=32",
        f"output_dir={root}/run",
        *extra,
    ]


def launcher(root: Path) -> Path:
    script = root / "launch.py"
    script.write_text(LAUNCHER.format(tests=str(TESTS)))
    return script


def recorded(folder: Path, rank: int = 0) -> dict[int, list[int]]:
    """``{optimizer steps taken before the batch: its labels}`` of one process."""
    lines = (folder / f"rank{rank}-labels.jsonl").read_text().splitlines()
    return {step: labels for step, labels in map(json.loads, lines)}


def start(command: list[str], root: Path, record: Path) -> subprocess.Popen:
    record.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SSL_TEST_RECORD": str(record), "OMP_NUM_THREADS": "1"}
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_sigkill_mid_epoch_then_resume_sees_the_rest_of_the_epoch_once(tmp_path) -> None:
    urls = write_shards(tmp_path / "shards", 40, 10, label=lambda i: i)  # 10 steps an epoch
    run = [
        sys.executable,
        str(launcher(tmp_path)),
        *args(tmp_path, urls, "trainer.epochs=2", "trainer.checkpoint_every=2"),
        "trainer.num_workers=1",  # items are pickled into a worker, which reads the shards
        "tracking.enabled=false",
    ]
    first = start(run, tmp_path, tmp_path / "first")
    seen = []
    for line in first.stderr:
        seen.append(line)
        if line.startswith("step 5/"):
            first.send_signal(signal.SIGKILL)
            break
    else:
        first.wait()
        pytest.fail("the run ended before it was killed:\n" + "".join(seen))
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL

    second = start([*run, "resume=auto"], tmp_path, tmp_path / "second")
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-3000:]
    assert "resuming from" in err

    before, after = recorded(tmp_path / "first"), recorded(tmp_path / "second")
    resumed_at = min(after)  # the step of the newest checkpoint the kill left
    assert 4 <= resumed_at < 10 and set(after) == set(range(resumed_at, 20))  # mid-epoch
    # steps both processes took saw the same samples: the resume is exact
    assert all(before[s] == after[s] for s in before.keys() & after.keys())
    epoch_1 = [i for s in range(resumed_at) for i in before[s]]
    epoch_1 += [i for s in range(resumed_at, 10) for i in after[s]]
    assert sorted(epoch_1) == list(range(40))  # every sample of the epoch exactly once
    assert sorted(i for s in range(10, 20) for i in after[s]) == list(range(40))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_nodes_split_the_shards_and_train_one_model(tmp_path) -> None:
    urls = write_shards(tmp_path / "shards", 44, 11, label=lambda i: i)
    uri = tracking_uri(tmp_path)
    port = free_port()
    nodes = [
        start(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                f"--node_rank={node}",
                "--nproc_per_node=1",
                "--rdzv_backend=c10d",
                f"--rdzv_endpoint=127.0.0.1:{port}",
                "--rdzv_id=two-nodes",
                str(launcher(tmp_path)),
                *args(tmp_path, urls, "trainer.epochs=1", "trainer.num_workers=0"),
                f"tracking.uri={uri}",
                "tracking.experiment=nodes",
            ],
            tmp_path,
            tmp_path / "record",
        )
        for node in (0, 1)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-4000:]

    # 44 samples, global batch 2 x 4: 5 steps; each rank took its half of every batch
    ranks = [recorded(tmp_path / "record", rank) for rank in (0, 1)]
    assert sorted(ranks[0]) == sorted(ranks[1]) == list(range(5))
    samples = [[i for labels in r.values() for i in labels] for r in ranks]
    assert not set(samples[0]) & set(samples[1])
    assert len(set(samples[0] + samples[1])) == 40 and set(samples[0] + samples[1]) <= set(
        range(44)
    )  # the 4 left over are the dropped incomplete global batch

    final = [torch.load(tmp_path / "record" / f"rank{r}-final.pt") for r in (0, 1)]
    assert [k for k in final[0] if not torch.equal(final[0][k], final[1][k])] == []

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("nodes").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
