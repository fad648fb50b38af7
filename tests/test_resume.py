"""Runs that survive: checkpoints, exact resume after SIGKILL, clean stops on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from ssl_core.training.checkpoint import load_checkpoint
from ssl_core.training.resume import step_checkpoints

STEPS = 15  # 40 images, 25 % held out, batch 8: 3 steps an epoch, 5 epochs


def run_args(root: Path) -> list[str]:
    return [
        "method=byol",
        "backbone=test_resnet",
        "data=synthetic",
        "data.num_samples=40",
        "data.image_size=32",
        "augment=kornia",
        "trainer.batch_size=8",
        "trainer.epochs=5",
        # a worker makes the views; the device-side draws come from the main process's RNG,
        # which only the checkpoint can restore
        "trainer.num_workers=1",
        "trainer.log_every=1",
        "trainer.deterministic=true",
        "trainer.checkpoint_every=2",
        "trainer.keep_checkpoints=2",
        "optim.warmup_epochs=1",
        "eval.knn=false",
        "byol.proj_hidden_dim=32",
        "byol.proj_dim=16",
        "byol.pred_hidden_dim=32",
        f"tracking.uri=sqlite:///{root}/mlflow.db",
        "tracking.experiment=resume",
        f"output_dir={root}/run",
    ]


def ssl(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "ssl_core", "run", *args],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def finish(*args: str, cwd: Path) -> str:
    proc = ssl(*args, cwd=cwd)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return err


def stop_at(step: int, signum: int, *args: str, cwd: Path) -> tuple[int, str]:
    """Start a run and send ``signum`` once it reports ``step``; returns (exit code, stderr)."""
    proc = ssl(*args, cwd=cwd)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(f"step {step}/"):
            proc.send_signal(signum)
            break
    else:
        proc.wait()
        pytest.fail("the run ended before the signal:\n" + "".join(seen))
    _, rest = proc.communicate(timeout=300)
    return proc.returncode, "".join(seen) + (rest or "")


def model_state(root: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(root / "run" / "checkpoint.pt")["model"]


def loss_history(root: Path) -> tuple[list[tuple[int, float]], list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    history = sorted(
        (m.step, m.value) for m in client.get_metric_history(runs[0].info.run_id, "loss")
    )
    return history, runs


def test_sigkill_twice_then_resume_is_bitwise_the_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    straight.mkdir(), killed.mkdir()
    finish(*run_args(straight), cwd=straight)

    # killed mid-epoch (step 4 is the first step of epoch 2), then again later
    code, _ = stop_at(4, signal.SIGKILL, *run_args(killed), cwd=killed)
    assert code == -signal.SIGKILL
    assert step_checkpoints(killed / "run"), "no checkpoint survived the first kill"
    code, err = stop_at(11, signal.SIGKILL, *run_args(killed), "resume=auto", cwd=killed)
    assert code == -signal.SIGKILL
    assert "resuming from" in err
    err = finish(*run_args(killed), "resume=auto", cwd=killed)
    assert "resuming from" in err

    expected, got = model_state(straight), model_state(killed)
    assert expected.keys() == got.keys()
    differing = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert differing == []

    history, runs = loss_history(killed)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [step for step, _ in history] == list(range(1, STEPS + 1))  # no gap, no repeat
    assert history == loss_history(straight)[0]
    assert len(step_checkpoints(killed / "run")) <= 2  # keep_checkpoints


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_finishes_the_step_checkpoints_and_marks_the_run_killed(tmp_path, signum, code):
    exit_code, err = stop_at(5, signum, *run_args(tmp_path), cwd=tmp_path)
    assert exit_code == code, err
    assert "resume=auto" in err
    (newest,) = step_checkpoints(tmp_path / "run")[-1:]
    stopped_at = load_checkpoint(newest)["step"]
    assert stopped_at >= 5
    history, runs = loss_history(tmp_path)
    assert runs[0].info.status == "KILLED"
    assert history[-1][0] == stopped_at

    finish(*run_args(tmp_path), "resume=auto", cwd=tmp_path)
    history, runs = loss_history(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [step for step, _ in history] == list(range(1, STEPS + 1))


def test_resume_refuses_a_config_that_changes_the_math(tmp_path, capsys):
    from ssl_core.cli import main

    args = [*run_args(tmp_path), "trainer.epochs=1"]
    assert main(["run", *args]) == 0
    capsys.readouterr()
    changed = [*args, "resume=auto", "optim.lr=0.1", "byol.tau_base=0.9"]
    assert main(["run", *changed]) == 2
    err = capsys.readouterr().err
    assert "optim.lr (0.45 -> 0.1)" in err and "byol.tau_base (0.99 -> 0.9)" in err
    assert "resume.force=true" in err
    # keys that do not change the math may differ; forcing accepts the rest
    assert main(["run", *args, "resume=auto", "trainer.log_every=5"]) == 0
    assert main(["run", *changed, "resume.force=true"]) == 0


def test_resume_auto_without_a_checkpoint_starts_fresh(tmp_path, capsys):
    from ssl_core.cli import main

    assert main(["run", *run_args(tmp_path), "trainer.epochs=1", "resume=auto"]) == 0
    assert "resuming" not in capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a checkpoint at all", "is truncated, corrupt or unsafe"),
        (None, "is not an ssl_core checkpoint"),
        ("truncate", "is truncated, corrupt or unsafe"),
    ],
)
def test_foreign_or_truncated_checkpoint_is_one_line(tmp_path, capsys, content, message):
    from ssl_core.cli import main

    path = tmp_path / "given.pt"
    if content is None:
        torch.save({"state_dict": {}}, path)
    elif content == "truncate":
        assert main(["run", *run_args(tmp_path), "trainer.epochs=1"]) == 0
        data = (tmp_path / "run" / "checkpoint.pt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    capsys.readouterr()
    assert main(["run", *run_args(tmp_path), f"resume={path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(path) in err[0]
