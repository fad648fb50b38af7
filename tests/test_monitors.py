"""Online monitors: the kNN monitor and the linear probe measure training without changing it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import timm
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from ssl_core import hookimpl
from ssl_core.config import build_config
from ssl_core.data import ImageData
from ssl_core.monitors.linear_probe import LinearProbe
from ssl_core.plugins import get_plugins
from ssl_core.training.engine import train


class EpochRecorder:
    """Keeps the metrics every epoch end saw, after the monitors added theirs."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    @hookimpl
    def ssl_epoch_end(self, run, epoch, metrics):
        self.epochs.append(dict(metrics))


def _train(args: list[str]) -> tuple[dict[str, torch.Tensor], list[dict[str, float]]]:
    recorder = EpochRecorder()
    plugins = get_plugins(extra=[("recorder", recorder)])
    cfg, selection = build_config(args, plugins.registry)
    train(cfg, selection, plugins)
    return load_file(f"{cfg.output_dir}/encoder.safetensors"), recorder.epochs


def test_monitors_report_each_epoch_and_leave_training_bitwise_unchanged(tmp_path, tiny_run_args):
    base = [a for a in tiny_run_args if not a.startswith("output_dir=")]
    base += ["tracking.enabled=false", "trainer.epochs=2"]
    plain, plain_epochs = _train(
        [*base, "eval.knn_every=0", "eval.probe=false", f"output_dir={tmp_path}/plain"]
    )
    watched, watched_epochs = _train(
        [*base, "eval.knn_every=1", "eval.probe=true", f"output_dir={tmp_path}/watched"]
    )
    assert plain.keys() == watched.keys()
    for name in plain:
        assert torch.equal(plain[name], watched[name]), f"{name} changed by the monitors"
    assert [set(m) & {"knn/top1", "probe/top1"} for m in plain_epochs] == [set(), set()]
    assert len(watched_epochs) == 2
    for metrics, plain_metrics in zip(watched_epochs, plain_epochs, strict=True):
        for key in ("knn/top1", "probe/top1", "probe/train_top1", "probe/loss"):
            assert key in metrics, key
        assert 0.0 <= metrics["knn/top1"] <= 1.0 and 0.0 <= metrics["probe/top1"] <= 1.0
        # monitors only add keys: the epoch's own metrics are those of the plain run
        assert metrics["epoch_loss"] == plain_metrics["epoch_loss"]


def test_the_last_epochs_knn_is_the_runs_final_knn_measured_once(tmp_path, tiny_run_args):
    """The monitor measures the final weights at the last epoch's end; the run's final kNN
    is that value, not a second pass over the data (one pass at init, one per epoch)."""
    import ssl_core.evaluation.knn as knn

    passes = []
    original = knn.knn_eval

    def counted(*args, **kwargs):
        passes.append(1)
        return original(*args, **kwargs)

    base = [a for a in tiny_run_args if not a.startswith("output_dir=")]
    args = [*base, "tracking.enabled=false", "trainer.epochs=2", "eval.knn_every=1"]
    recorder = EpochRecorder()
    plugins = get_plugins(extra=[("recorder", recorder)])
    cfg, selection = build_config([*args, f"output_dir={tmp_path}/run"], plugins.registry)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(knn, "knn_eval", counted)
        final = train(cfg, selection, plugins)
    assert len(passes) == 3  # initialization, epoch 1, epoch 2 (the final weights)
    assert final["knn_top1"] == recorder.epochs[-1]["knn/top1"]


def _fake_run(encoder: torch.nn.Module, labels: torch.Tensor) -> SimpleNamespace:
    config = OmegaConf.create(
        {
            "eval": {"probe": True, "probe_lr": 0.1},
            "trainer": {"seed": 0},
            "data": {"image_size": 16},
        }
    )
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    data = ImageData(train=[(image, 0)] * 4, val=[(image, 0), (image, 1)], classes=["a", "b"])
    return SimpleNamespace(
        config=config, data=data, encoder=encoder, device=torch.device("cpu"), batch=None
    )


def test_probe_trains_on_detached_features_and_leaves_encoder_gradients_alone():
    torch.manual_seed(0)
    encoder = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    x = torch.randn(4, 3, 16, 16)
    labels = torch.tensor([0, 1, 0, 1])

    def encoder_grads() -> dict[str, torch.Tensor]:
        encoder.zero_grad(set_to_none=True)
        encoder.train()
        encoder(x).pow(2).mean().backward()
        return {n: p.grad.clone() for n, p in encoder.named_parameters()}

    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    expected = encoder_grads()
    encoder.load_state_dict(state)  # BatchNorm running stats as before

    probe = LinearProbe()
    run = _fake_run(encoder, labels)
    probe.ssl_run_start(run=run)
    head_before = probe.head.weight.detach().clone()
    got = encoder_grads()
    run.batch = {"label": labels}
    probe.ssl_step_end(run=run, step=1, metrics={})

    for name in expected:
        assert torch.equal(expected[name], got[name]), name
        # the probe's own step put nothing into the encoder's gradients
        assert torch.equal(got[name], dict(encoder.named_parameters())[name].grad), name
    assert not torch.equal(head_before, probe.head.weight), "the probe did not train"
    assert probe.steps == 1 and probe.seen == 4

    metrics: dict[str, float] = {}
    probe.ssl_epoch_end(run=run, epoch=1, metrics=metrics)
    assert set(metrics) == {"probe/top1", "probe/train_top1", "probe/loss"}
    probe.ssl_run_end(run=run, status="FINISHED", metrics={})
    assert not encoder._forward_hooks, "the probe's forward hook outlived the run"


def test_probe_matches_labels_of_views_concatenated_in_one_forward():
    encoder = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    probe = LinearProbe()
    run = _fake_run(encoder, torch.tensor([0, 1]))
    probe.ssl_run_start(run=run)
    encoder.train()
    encoder(torch.randn(4, 3, 16, 16))  # two views of a batch of two
    run.batch = {"label": torch.tensor([0, 1])}
    probe.ssl_step_end(run=run, step=1, metrics={})
    assert probe.seen == 4
    probe.ssl_run_end(run=run, status="FINISHED", metrics={})
