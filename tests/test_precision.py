"""Mixed precision: the forward pass under autocast, the loss and the EMA in float32."""

from __future__ import annotations

import pytest
import torch

from ssl_core import cli, hookimpl
from ssl_core.plugins import get_plugins
from ssl_core.training.checkpoint import load_checkpoint


class AutocastProbe:
    """Records, per loss computation, the autocast dtype in force and the loss dtype."""

    def __init__(self) -> None:
        self.seen: list[tuple[torch.dtype | None, torch.dtype]] = []

    @hookimpl(wrapper=True)
    def ssl_compute_loss(self, model, views):
        device = views[0].device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        out = yield
        self.seen.append((dtype, out["loss"].dtype))
        return out


def run(tmp_path, monkeypatch, *extra: str) -> tuple[dict, AutocastProbe]:
    probe = AutocastProbe()
    monkeypatch.setattr(cli, "_load_plugins", lambda: get_plugins(extra=[("probe", probe)]))
    args = [
        "run",
        "method=byol",
        "backbone=test_resnet",
        "data=synthetic",
        "data.num_samples=40",
        "data.image_size=32",
        "augment=kornia",
        "trainer.batch_size=8",
        "trainer.epochs=1",
        "trainer.num_workers=0",
        "eval.knn=false",
        "byol.proj_hidden_dim=32",
        "byol.proj_dim=16",
        "byol.pred_hidden_dim=32",
        "tracking.enabled=false",
        f"output_dir={tmp_path}/run",
        *extra,
    ]
    assert cli.main(args) == 0
    return load_checkpoint(tmp_path / "run" / "checkpoint.pt"), probe


def test_bf16_autocast_trains_on_cpu_with_fp32_weights_and_loss(tmp_path, monkeypatch):
    state, probe = run(tmp_path, monkeypatch, "trainer.device=cpu", "trainer.precision=bf16")
    assert state["step"] == 3
    assert probe.seen == [(torch.bfloat16, torch.float32)] * 3
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert state["scaler"] is None


def test_fp16_uses_a_grad_scaler_whose_state_is_checkpointed(tmp_path, monkeypatch):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.amp.GradScaler(device)
        with torch.autocast(device, dtype=torch.float16):
            torch.ones(2, 2, device=device) @ torch.ones(2, 2, device=device)
    except (RuntimeError, ValueError) as exc:  # an old torch without fp16 on the CPU
        pytest.skip(f"no fp16 autocast and GradScaler on {device}: {exc}")
    state, probe = run(tmp_path, monkeypatch, f"trainer.device={device}", "trainer.precision=fp16")
    assert probe.seen == [(torch.float16, torch.float32)] * 3
    assert state["scaler"]["scale"] > 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_full_precision_runs_without_autocast(tmp_path, monkeypatch):
    state, probe = run(tmp_path, monkeypatch, "trainer.device=cpu")
    assert probe.seen == [(None, torch.float32)] * 3
