"""Continuing a finished run for longer: ``ssl run resume=RUN trainer.epochs=N``."""

from __future__ import annotations

import math

import pytest
from mlflow.tracking import MlflowClient

from ssl_core.cli import main
from ssl_core.training.checkpoint import load_checkpoint

STEPS_PER_EPOCH = 3  # 40 images, 25 % held out, batch 8
BASE_LR = 0.45 * 8 / 256  # optim.lr x batch / 256
TAU_BASE = 0.99  # BYOL's recipe


def run_args(tmp_path) -> list[str]:
    return [
        "method=byol",
        "backbone=test_resnet",
        "data=synthetic",
        "data.num_samples=40",
        "data.image_size=32",
        "augment=albumentations",
        "trainer.batch_size=8",
        "trainer.epochs=1",
        "trainer.num_workers=0",
        "trainer.log_every=1",
        "trainer.checkpoint_every=1",
        "trainer.keep_checkpoints=5",
        "optim.warmup_epochs=0",
        "eval.knn=false",
        "byol.proj_hidden_dim=32",
        "byol.proj_dim=16",
        "byol.pred_hidden_dim=32",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "tracking.experiment=continue",
        f"output_dir={tmp_path}/run",
    ]


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_a_finished_run_goes_on_in_a_child_run_with_the_longer_schedule(tmp_path, capsys):
    assert main(["run", *run_args(tmp_path)]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (parent,) = client.search_runs([client.get_experiment_by_name("continue").experiment_id])
    capsys.readouterr()

    # refused: a checkpoint from before the run's end (an interrupted run keeps its length) ...
    midway = tmp_path / "run" / "checkpoints" / "step-00000002.pt"
    assert main(["run", f"resume={midway}", "trainer.epochs=2"]) == 2
    assert "the run stopped at step 2 before finishing its trainer.epochs=1" in (
        capsys.readouterr().err
    )
    # ... a length that adds no step, and another key that changes the math
    assert main(["run", f"resume={tmp_path / 'run'}", "trainer.max_steps=2"]) == 2
    assert "already finished with trainer.epochs=1 at step 3" in capsys.readouterr().err
    assert main(["run", f"resume={tmp_path / 'run'}", "trainer.epochs=2", "optim.lr=1.0"]) == 2
    assert "optim.lr (0.45 -> 1.0)" in capsys.readouterr().err

    # only the run and the new length on the command line: the rest is the run's config
    uri = f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"
    assert main(["run", f"resume={parent.info.run_id}", "trainer.epochs=2", uri]) == 0
    err = capsys.readouterr().err
    assert "the run finished at step 3 (trainer.epochs=1) and goes on to step 6" in err

    runs = client.search_runs([parent.info.experiment_id])
    (child,) = [r for r in runs if r.info.run_id != parent.info.run_id]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["ssl.continued_from"] == parent.info.run_id
    assert child.data.params["trainer.epochs"] == "2" and child.info.status == "FINISHED"
    parent = client.get_run(parent.info.run_id)
    assert parent.data.params["trainer.epochs"] == "1" and parent.info.status == "FINISHED"

    # steps 4..6 of a 6-step schedule (no warm-up): lr and tau by hand, from the first step
    total = 2 * STEPS_PER_EPOCH
    lr = history(client, child.info.run_id, "lr")
    tau = history(client, child.info.run_id, "tau")
    assert [s for s, _ in lr] == list(range(4, total + 1))
    assert lr[0][1] == pytest.approx(BASE_LR * 0.5 * (1 + math.cos(math.pi * 3 / 6)), rel=1e-12)
    assert lr[1][1] == pytest.approx(BASE_LR * 0.5 * (1 + math.cos(math.pi * 4 / 6)), rel=1e-12)
    assert lr[0][1] == pytest.approx(0.5 * BASE_LR)  # half-way down the cosine: back up from ~0
    # tau after the update of step k (0-based) is 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2
    assert tau[0][1] == pytest.approx(1 - (1 - TAU_BASE) * (math.cos(math.pi * 3 / 6) + 1) / 2)
    assert tau[0][1] == pytest.approx(0.995)
    assert history(client, parent.info.run_id, "lr")[-1][0] == 3  # the parent's curve ends

    final = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert final["step"] == total and final["mlflow_run_id"] == child.info.run_id
    assert {a.path for a in client.list_artifacts(child.info.run_id)} >= {"encoder", "checkpoint"}


def test_resume_auto_with_a_longer_length_continues_in_a_child_run(tmp_path, capsys):
    """``resume=auto output_dir=DIR trainer.epochs=2`` on a finished run is a continuation too:
    a child run of its own, not the parent reopened from the directory's run.json."""
    assert main(["run", *run_args(tmp_path)]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("continue").experiment_id
    (parent,) = client.search_runs([experiment])
    assert main(["run", *run_args(tmp_path), "resume=auto", "trainer.epochs=2"]) == 0
    runs = {r.info.run_id: r for r in client.search_runs([experiment])}
    assert len(runs) == 2
    (child,) = [r for r in runs.values() if r.info.run_id != parent.info.run_id]
    assert child.data.tags["ssl.continued_from"] == parent.info.run_id
    assert child.info.status == runs[parent.info.run_id].info.status == "FINISHED"
    # the parent's history ends where it finished; the child's starts after it
    assert [s for s, _ in history(client, parent.info.run_id, "loss")] == [1, 2, 3]
    assert [s for s, _ in history(client, child.info.run_id, "loss")] == [4, 5, 6]
