"""Several processes: the whole-batch helpers, and training under torchrun (gloo on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from ssl_core import cli
from ssl_core.training import distributed
from ssl_core.training.checkpoint import load_checkpoint


def test_single_process_is_rank_0_of_1():
    assert not distributed.is_initialized()
    assert distributed.world_size() == 1
    assert distributed.rank() == 0


def test_single_process_gather_is_the_identity_and_keeps_the_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    gathered = distributed.gather(x)
    assert gathered is x
    (gathered * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(3.0).expand(4, 3))


TWO_PROCESSES = textwrap.dedent(
    """
    import os, sys, torch, torch.distributed as dist, torch.multiprocessing as mp
    from ssl_core.training import distributed

    def work(rank, port):
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                rank=rank, world_size=2)
        x = torch.full((2, 3), float(rank + 1), requires_grad=True)
        gathered = distributed.gather(x)
        assert distributed.world_size() == 2 and distributed.rank() == rank
        assert gathered.shape == (4, 3)
        assert torch.equal(gathered[:2], torch.ones(2, 3)) and torch.equal(gathered[2:], 2 * torch.ones(2, 3))
        # Each process's loss weights every gathered row by (its rank + 1); the local slice
        # gets the sum of both processes' weights, 1 + 2.
        (gathered.sum(dim=1) * (rank + 1)).sum().backward()
        assert torch.equal(x.grad, torch.full((2, 3), 3.0)), x.grad
        assert not distributed.gather(x.detach()).requires_grad
        dist.destroy_process_group()

    if __name__ == "__main__":
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.start_processes(work, args=(port,), nprocs=2, start_method="fork")
        print("ok")
    """
)


def test_two_processes_gather_in_rank_order_and_sum_gradients(tmp_path):
    script = tmp_path / "two_processes.py"
    script.write_text(TWO_PROCESSES)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


# --- training under torchrun -------------------------------------------------------------------

LAUNCHER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import toy_plugins
    from ssl_core import cli
    from ssl_core.plugins import get_plugins

    cli._load_plugins = lambda: get_plugins(extra=[("record", toy_plugins.Recorder())])
    raise SystemExit(cli.main(sys.argv[1:]))
    """
)


def byol_args(root: Path, *extra: str) -> list[str]:
    return [
        "run",
        "method=byol",
        "backbone=test_resnet",
        "data=synthetic",
        "data.num_samples=40",  # 30 training images: 3 global batches of 2 x 4 an epoch
        "data.image_size=32",
        "augment=kornia",
        "trainer.batch_size=4",
        "trainer.epochs=2",
        "trainer.num_workers=0",
        "trainer.device=cpu",
        "trainer.checkpoint_every=2",
        "trainer.sync_bn=true",
        "byol.proj_hidden_dim=32",
        "byol.proj_dim=16",
        "byol.pred_hidden_dim=32",
        f"tracking.uri=sqlite:///{root}/mlflow.db",
        "tracking.experiment=ddp",
        f"output_dir={root}/run",
        *extra,
    ]


def test_torchrun_two_processes_train_one_model_and_one_tracked_run(tmp_path, capsys):
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "SSL_TEST_RECORD": str(tmp_path), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(launcher), *byol_args(tmp_path)]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]

    # every process holds the same online and target weights after the last update
    final = [torch.load(tmp_path / f"rank{r}-final.pt") for r in range(2)]
    assert final[0].keys() == final[1].keys()
    assert any(k.startswith("target_encoder.") for k in final[0])
    assert [k for k in final[0] if not torch.equal(final[0][k], final[1][k])] == []
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert checkpoint["step"] == 6 and checkpoint["world_size"] == 2
    assert len(checkpoint["rng_ranks"]) == 2
    assert all(torch.equal(checkpoint["model"][k], v) for k, v in final[0].items())
    assert result.stderr.count("kNN top-1 after training") == 1  # rank 0 speaks
    assert result.stderr.count("note: optim.warmup_epochs=10") == 1  # the setup's notes too

    # one MLflow run, whose loss is the mean of the processes' losses
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    logged = sorted(
        (m.step, m.value) for m in client.get_metric_history(runs[0].info.run_id, "loss")
    )
    losses = [
        dict(
            json.loads(line) for line in (tmp_path / f"rank{r}-loss.jsonl").read_text().splitlines()
        )
        for r in range(2)
    ]
    assert [step for step, _ in logged] == list(range(1, 7))
    for step, value in logged:
        assert value == pytest.approx((losses[0][step - 1] + losses[1][step - 1]) / 2, rel=1e-6)

    # one process continues from step 4 with the same global batch (8 x 1); another global
    # batch is refused
    more = byol_args(tmp_path, f"resume={tmp_path}/run/checkpoints/step-00000004.pt")
    assert cli.main([*more, "eval.knn=false"]) == 2
    assert "the global batch differs" in capsys.readouterr().err
    assert cli.main([*more, "eval.knn=false", "trainer.batch_size=8"]) == 0
    assert "same global batch" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 6


FAILING_LAUNCHER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import toy_plugins
    from ssl_core import cli, hookimpl
    from ssl_core.plugins import get_plugins

    class FailAtStep2:
        # a lifecycle plugin (first process only) ending the run, as the collapse guard does
        @hookimpl
        def ssl_step_end(self, run, step, metrics):
            if step == 2:
                run.fail("stopped at step 2 by the test's guard")

    extra = [("toy", toy_plugins), ("record", toy_plugins.Recorder()), ("fail", FailAtStep2())]
    cli._load_plugins = lambda: get_plugins(extra=extra)
    raise SystemExit(cli.main(sys.argv[1:]))
    """
)


def test_a_failure_asked_on_the_first_process_stops_every_process_at_the_same_step(tmp_path):
    launcher = tmp_path / "launch.py"
    launcher.write_text(FAILING_LAUNCHER.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "SSL_TEST_RECORD": str(tmp_path), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(launcher), "run", "method=toy", "backbone=tinygn"]
    command += ["augment=toyviews", "data=synthetic", "data.num_samples=64", "data.image_size=16"]
    command += ["trainer.batch_size=4", "trainer.epochs=2", "trainer.num_workers=0"]
    command += ["trainer.device=cpu", "eval.knn=false", "tracking.enabled=false"]
    command += [f"output_dir={tmp_path}/run"]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    assert result.stderr.count("error: stopped at step 2 by the test's guard") == 1
    # both processes computed the third step's loss, then stopped before its optimizer step
    for rank in range(2):
        steps = [json.loads(line)[0] for line in open(tmp_path / f"rank{rank}-loss.jsonl")]
        assert steps == [0, 1, 2], (rank, steps)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
