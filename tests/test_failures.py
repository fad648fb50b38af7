"""Failures during training: a non-finite loss, a checkpoint that cannot be written."""

from __future__ import annotations

import errno

import pytest
import torch

from ssl_core import cli, hookimpl
from ssl_core.plugins import get_plugins
from ssl_core.training.checkpoint import load_checkpoint
from ssl_core.training.resume import step_checkpoints


class NanLoss:
    """Wraps the method's loss hook and makes the loss NaN at the given (1-based) steps."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps

    @hookimpl(wrapper=True)
    def ssl_compute_loss(self, info):
        out = yield
        if info.step + 1 in self.steps:
            out = {**out, "loss": out["loss"] * float("nan")}
        return out


@pytest.fixture
def inject(monkeypatch):
    def add(plugin: object) -> None:
        monkeypatch.setattr(cli, "_load_plugins", lambda: get_plugins(extra=[("inject", plugin)]))

    return add


def args(tmp_path, *extra: str) -> list[str]:
    return [
        "run",
        "method=byol",
        "backbone=test_resnet",
        "data=synthetic",
        "data.num_samples=40",
        "augment=kornia",
        "trainer.batch_size=8",
        "trainer.epochs=2",
        "trainer.num_workers=0",
        "trainer.checkpoint_every=2",
        "eval.knn=false",
        "byol.proj_hidden_dim=32",
        "byol.proj_dim=16",
        "byol.pred_hidden_dim=32",
        "tracking.enabled=false",
        f"output_dir={tmp_path}/run",
        *extra,
    ]


def test_nonfinite_loss_stops_with_the_step_and_last_checkpoint(tmp_path, inject, capsys):
    inject(NanLoss({3}))
    assert cli.main(args(tmp_path)) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "the loss became nan at step 3" in line
    assert "step-00000002.pt" in line
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000002.pt")["step"] == 2


def test_nonfinite_steps_can_be_skipped_up_to_a_bound(tmp_path, inject, capsys):
    inject(NanLoss({2, 4}))
    assert cli.main(args(tmp_path, "trainer.skip_nonfinite=2")) == 0
    err = capsys.readouterr().err
    assert "step skipped (1 of at most 2)" in err and "step skipped (2 of at most 2)" in err
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch, capsys):
    real_save = torch.save
    calls = []

    def save(obj, path, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            with open(path, "wb") as handle:  # a partial write, then the disk is full
                handle.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    assert cli.main(args(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err
    assert "the previous checkpoint is intact" in err and "step-00000002.pt" in err
    (kept,) = step_checkpoints(tmp_path / "run")
    assert load_checkpoint(kept)["step"] == 2
    leftovers = [p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p != kept]
    assert leftovers == []
