"""``ssl export``: the encoder file loads in timm and gives the features of ssl_core's encoder."""

from __future__ import annotations

import pytest
import timm
import torch

from ssl_core import load_encoder
from ssl_core.cli import main
from ssl_core.evaluation.sources import load_source
from ssl_core.plugins import get_plugins


def _features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def test_export_round_trip_through_timm_gives_equal_features(tmp_path, tiny_run_args, capsys):
    assert main(["run", *tiny_run_args, "trainer.epochs=1", "tracking.enabled=false"]) == 0
    out = tmp_path / "exported" / "encoder.safetensors"
    capsys.readouterr()
    assert main(["export", f"run={tmp_path / 'run'}", f"out={out}"]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}" in said and "timm.create_model('test_resnet'" in said

    # the same bytes as the run's own encoder.safetensors (the MLflow artifact)
    assert out.read_bytes() == (tmp_path / "run" / "encoder.safetensors").read_bytes()

    inside = load_source(str(tmp_path / "run" / "checkpoint.pt"), get_plugins(), "unused").encoder
    x = torch.randn(3, 3, 32, 32)
    expected = _features(inside, x)
    by_overlay = timm.create_model(
        "test_resnet",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(out)),
        num_classes=0,
    )
    by_path = timm.create_model("test_resnet", checkpoint_path=str(out), num_classes=0)
    assert torch.equal(_features(by_overlay, x), expected)
    assert torch.equal(_features(by_path, x), expected)
    # and not by accident: a randomly initialized model differs
    fresh = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    assert not torch.allclose(_features(fresh, x), expected)


def test_small_input_encoder_export_says_how_to_load_it(tmp_path, capsys):
    from ssl_backbones.timm_backbone import create_backbone

    from ssl_core.config import build_config, to_yaml
    from ssl_core.training.checkpoint import save_weights

    # A run directory as a run with backbone.small_input=true leaves it (no training needed).
    args = ["method=byol", "backbone=resnet18", "backbone.small_input=true"]
    cfg, _ = build_config(args, get_plugins().registry)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(to_yaml(cfg))
    torch.manual_seed(0)
    save_weights(run_dir / "encoder.safetensors", create_backbone("resnet18", small_input=True))

    out = tmp_path / "small.safetensors"
    assert main(["export", f"run={run_dir}", f"out={out}"]) == 0
    said = capsys.readouterr().out
    assert "small-input ResNet stem" in said and "load_encoder(" in said

    with pytest.raises(RuntimeError, match="conv1"):
        timm.create_model(
            "resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(out)), num_classes=0
        )
    inside = load_source(str(run_dir), get_plugins(), "unused").encoder
    loaded = load_encoder(out, backbone="resnet18", overrides={"backbone.small_input": True})
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(_features(loaded, x), _features(inside, x))


def test_export_rejects_unknown_keys(tmp_path, capsys):
    assert main(["export", "run=x", "output=enc.safetensors"]) == 2
    assert "ssl export takes run=SOURCE out=FILE" in capsys.readouterr().err
