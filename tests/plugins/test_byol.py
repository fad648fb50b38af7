"""The BYOL plugin: loss values, stop-gradient, target initialization, the core's EMA of the
declared target, per-view BatchNorm, registration."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from ssl_byol import BYOL, BYOLOptions, ssl_register_methods
from ssl_byol.model import BYOLModel, byol_loss
from torch import nn

from ssl_core import EMA, ConfigError, StepInfo
from ssl_core.config import component_options
from ssl_core.config.resolve import check_views
from ssl_core.methods.targets import update_declared_targets
from ssl_core.registry import Registry

sys.path.insert(0, str(Path(__file__).parent))
from wrapped import loss_through_wrapper  # noqa: E402

TAU_BASE = 0.99
OPTIONS = BYOLOptions(tau_base=TAU_BASE, proj_hidden_dim=32, proj_dim=8, pred_hidden_dim=12)


def tiny_backbone() -> nn.Module:
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16))
    backbone.num_features = 16
    return backbone


@pytest.fixture
def run() -> BYOL:
    return BYOL(OPTIONS)


@pytest.fixture
def model(run) -> BYOLModel:
    torch.manual_seed(0)
    model = run.ssl_build_heads(backbone=tiny_backbone())
    model.train()
    return model


def views(n: int = 2) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 8, 8, generator=generator) for _ in range(n)]


def online_parameters(model: BYOLModel) -> list[nn.Parameter]:
    """θ: the online encoder and projector, the modules the target follows (no predictor)."""
    return [*model.online_encoder.parameters(), *model.projector.parameters()]


def target_parameters(model: BYOLModel) -> list[nn.Parameter]:
    """ξ: the target encoder and projector, in the order of :func:`online_parameters`."""
    return [*model.target_encoder.parameters(), *model.target_projector.parameters()]


# --- loss ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "z", "expected"),
    [
        ([1.0, 0.0], [0.0, 1.0], 2.0),
        ([1.0, 0.0], [1.0, 0.0], 0.0),
        ([3.0, 4.0], [3.0, 4.0], 0.0),
        ([1.0, 1.0], [1.0, 0.0], 2.0 - math.sqrt(2.0)),
        ([1.0, 0.0], [-2.0, 0.0], 4.0),
    ],
)
def test_byol_loss_single_pairs(p, z, expected) -> None:
    """One pair: ‖p̂ − ẑ‖² = 2 − 2·cos(p, z), whatever the norms."""
    loss = byol_loss(torch.tensor([p]), torch.tensor([z]))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_byol_loss_averages_over_the_batch() -> None:
    """The per-sample terms are averaged, not summed, over the batch."""
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 5.0]])
    z = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    expected = (2.0 + 0.0 + (2.0 - math.sqrt(2.0)) + 0.0) / 4
    assert byol_loss(p, z).item() == pytest.approx(expected, abs=1e-6)


def test_byol_loss_is_float32_for_half_inputs() -> None:
    """bf16 inputs give a float32 loss with the float32 value."""
    p = torch.tensor([[1.0, 1.0]], dtype=torch.bfloat16)
    z = torch.tensor([[1.0, 0.0]], dtype=torch.bfloat16)
    loss = byol_loss(p, z)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(2.0 - math.sqrt(2.0), abs=1e-6)


class StubModel(nn.Module):
    """Returns fixed predictions and projections, to check how the two directions combine."""

    def forward(self, views):
        p1, p2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])
        z1, z2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
        return [p1, p2], [z1, z2]


def test_compute_loss_sums_both_directions(run) -> None:
    """L = ℓ(p₁, z'₂) + ℓ(p₂, z'₁): each prediction is compared with the *other* view."""
    out = run.ssl_compute_loss(model=StubModel(), views=views())
    # byol_loss(p1, z2) = 2 (orthogonal), byol_loss(p2, z1) = 2 − √2
    assert out["loss"].item() == pytest.approx(2.0 + 2.0 - math.sqrt(2.0), abs=1e-6)


def test_compute_loss_matches_the_pieces(run, model) -> None:
    """The hook's loss equals the loss of the model's pieces run view by view."""
    v1, v2 = views()
    out = run.ssl_compute_loss(model=model, views=[v1, v2])
    # Forwarding the same views again in train mode gives the same BatchNorm batch statistics.
    expected = byol_loss(model.online(v1), model.target(v2)) + byol_loss(
        model.online(v2), model.target(v1)
    )
    assert out["loss"].shape == ()
    torch.testing.assert_close(out["loss"], expected)


def test_compute_loss_calls_the_model_once_through_a_data_parallel_wrapper(run, model) -> None:
    """The hook gets the model itself; under data-parallel training its one call ``model(views)``
    goes through the wrapper (which must see one forward per micro-batch)."""
    v = views()
    expected = run.ssl_compute_loss(model=model, views=v)["loss"]
    out, calls = loss_through_wrapper(run, model, v)
    assert calls == [2]
    torch.testing.assert_close(out["loss"], expected)


def test_gradients_reach_online_only(run, model) -> None:
    """Stop-gradient: encoder, projector and predictor get gradients; the target none."""
    out = run.ssl_compute_loss(model=model, views=views())
    out["loss"].backward()
    for name in ("online_encoder", "projector", "predictor"):
        params = list(getattr(model, name).parameters())
        assert params and all(p.grad is not None for p in params), name
    for name in ("target_encoder", "target_projector"):
        params = list(getattr(model, name).parameters())
        assert params and all(p.grad is None and not p.requires_grad for p in params), name


# --- model --------------------------------------------------------------------------------


def test_model_keeps_the_backbone_object(run) -> None:
    """The online encoder is the backbone object (evaluated and exported); heads have the
    configured widths."""
    backbone = tiny_backbone()
    model = run.ssl_build_heads(backbone=backbone)
    assert model.online_encoder is backbone
    assert model.target_encoder is not backbone
    assert model.projector[0].in_features == 16
    assert model.projector[0].out_features == 32
    assert model.projector[-1].out_features == 8
    assert model.predictor[0].in_features == 8
    assert model.predictor[0].out_features == 12
    assert model.predictor[-1].out_features == 8


def test_head_state_dict_keys_are_unchanged(model) -> None:
    """Linear(no bias) → BatchNorm → ReLU → Linear, under the Sequential indices that
    checkpoints of the previous heads used."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    for head in ("projector", "predictor", "target_projector"):
        keys = [k for k in model.state_dict() if k.startswith(f"{head}.")]
        expected = [f"{head}.0.weight", *(f"{head}.1.{b}" for b in bn)]
        assert keys == [*expected, f"{head}.3.weight", f"{head}.3.bias"]


def test_target_starts_equal_to_online(model) -> None:
    """ξ starts as a copy of θ: equal values, distinct tensors."""
    online, target = online_parameters(model), target_parameters(model)
    assert len(online) == len(target)
    for o, t in zip(online, target, strict=True):
        assert o is not t
        torch.testing.assert_close(o, t, rtol=0, atol=0)


def test_predictor_is_online_only(model) -> None:
    """No target predictor; the predictor trains."""
    predictor = {id(p) for p in model.predictor.parameters()}
    target = {id(p) for p in target_parameters(model)}
    assert predictor.isdisjoint(target)
    assert not any(name.startswith("target_predictor") for name, _ in model.named_modules())
    assert all(p.requires_grad for p in model.predictor.parameters())


def test_optimizer_would_get_exactly_the_online_parameters(model) -> None:
    """The trainable parameters are θ and the predictor, nothing of the target."""
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    online = {id(p) for p in [*online_parameters(model), *model.predictor.parameters()]}
    assert trainable == online


def test_target_bn_statistics_come_from_its_own_forward(run, model) -> None:
    """The target's BatchNorm running statistics move with its own forward passes."""
    before = model.target_projector[1].running_mean.clone()
    run.ssl_compute_loss(model=model, views=views())
    assert not torch.equal(model.target_projector[1].running_mean, before)


def test_views_go_through_separately_unless_concat_views() -> None:
    """BatchNorm per view: by default each view is normalized over its own batch of 4, as
    in the paper; ``concat_views`` makes both views one batch of 8."""
    v1, v2 = views()
    torch.manual_seed(0)
    separate = BYOL(OPTIONS).ssl_build_heads(backbone=tiny_backbone())
    torch.manual_seed(0)
    joined_options = BYOLOptions(**{**vars(OPTIONS), "concat_views": True})
    joined = BYOL(joined_options).ssl_build_heads(backbone=tiny_backbone())
    joined.load_state_dict(separate.state_dict())
    (p1, p2), (z1, z2) = separate([v1, v2])
    torch.testing.assert_close(p1, separate.online(v1))
    torch.testing.assert_close(p2, separate.online(v2))
    torch.testing.assert_close(z2, separate.target(v2))
    (q1, q2), (y1, y2) = joined([v1, v2])
    both = torch.cat([v1, v2])
    torch.testing.assert_close(torch.cat([q1, q2]), separate.online(both))
    torch.testing.assert_close(torch.cat([y1, y2]), separate.target(both))
    assert q1.shape == p1.shape and not torch.allclose(q1, p1)


# --- the target, updated by the core ------------------------------------------------------


def test_model_declares_its_target_for_the_core(model) -> None:
    """The target is declared, not updated by the method: encoder and projector, τ_base from
    the options, logged as ``tau``; the plugin has no ``ssl_update_target``."""
    assert isinstance(model.ema, EMA)
    assert model.ema.pairs == {"target_encoder": "online_encoder", "target_projector": "projector"}
    assert (model.ema.tau_base, model.ema.metric) == (TAU_BASE, "tau")
    assert not hasattr(BYOL, "ssl_update_target")


# τ = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2: k = 0 → τ_base = 0.99; k = K/2 → 1 − 0.01/2 = 0.995
@pytest.mark.parametrize(("step", "tau"), [(0, 0.99), (5, 0.995)])
def test_core_update_moves_the_target_by_one_minus_tau(model, step, tau) -> None:
    """After an optimizer step the core moves ξ ← ξ + (1 − τ)·(θ − ξ) and logs τ; θ and the
    predictor stay as they are."""
    torch.manual_seed(2)
    with torch.no_grad():
        for param in online_parameters(model):
            param.add_(torch.randn_like(param))
    online = [p.detach().clone() for p in online_parameters(model)]
    target = [p.detach().clone() for p in target_parameters(model)]
    predictor = [p.detach().clone() for p in model.predictor.parameters()]

    info = StepInfo(step=step, epoch=0, steps_per_epoch=10, total_steps=10)
    out = update_declared_targets(model, info)

    assert out == {"tau": pytest.approx(tau, abs=1e-12)}
    for before, theta, after in zip(target, online, target_parameters(model), strict=True):
        torch.testing.assert_close(after, before + (1 - tau) * (theta - before))
        assert not torch.equal(after, before)
    for theta, now in zip(online, online_parameters(model), strict=True):
        torch.testing.assert_close(now, theta, rtol=0, atol=0)
    for old, now in zip(predictor, model.predictor.parameters(), strict=True):
        torch.testing.assert_close(now, old, rtol=0, atol=0)


def test_core_update_reaches_tau_one_at_the_last_step(model) -> None:
    """k = K: τ = 1, the target no longer moves."""
    with torch.no_grad():
        for param in online_parameters(model):
            param.add_(1.0)
    target = [p.detach().clone() for p in target_parameters(model)]
    info = StepInfo(step=10, epoch=0, steps_per_epoch=10, total_steps=10)
    assert update_declared_targets(model, info)["tau"] == pytest.approx(1.0)
    for before, after in zip(target, target_parameters(model), strict=True):
        torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_core_update_leaves_target_buffers_alone(model) -> None:
    """Only parameters follow by EMA; the target's BatchNorm statistics are its own."""
    with torch.no_grad():
        model.projector[1].running_mean.fill_(5.0)
    update_declared_targets(model, StepInfo(0, 0, 10, 10))
    assert torch.equal(model.target_projector[1].running_mean, torch.zeros(32))


# --- options and registration -------------------------------------------------------------


def test_options_default_to_the_paper() -> None:
    """Defaults: the 100–300-epoch recipe, τ_base 0.99, 4096/256/4096 heads, views apart."""
    assert BYOLOptions() == BYOLOptions(
        tau_base=0.99,
        proj_hidden_dim=4096,
        proj_dim=256,
        pred_hidden_dim=4096,
        concat_views=False,
    )


def registered() -> Registry:
    registry = Registry()
    ssl_register_methods(register=registry.registrar("method", "byol"))
    return registry


def test_registers_byol_with_its_options_and_two_views() -> None:
    """``method=byol``: typed options, two views per image, a factory taking the options."""
    component = registered().get("method", "byol")
    assert component.name == "byol"
    assert component.options is BYOLOptions
    assert component.views == (2, 2)
    assert "Bootstrap Your Own Latent" in component.description
    plugin = component.factory(OPTIONS)
    assert isinstance(plugin, BYOL) and plugin.options is OPTIONS


def test_run_plugin_gets_the_runs_options() -> None:
    """The ``byol`` group of a run's config becomes a typed :class:`BYOLOptions` that the
    factory gets (options no longer read the config themselves)."""
    component = registered().get("method", "byol")
    config = OmegaConf.create(
        {
            "byol": {
                "tau_base": TAU_BASE,
                "proj_hidden_dim": 32,
                "proj_dim": 8,
                "pred_hidden_dim": 12,
            }
        }
    )
    plugin = component.make(config, component_options(component, config))
    assert isinstance(plugin, BYOL)
    assert plugin.options == OPTIONS


@pytest.mark.parametrize("made", [1, 3])
def test_other_view_counts_are_refused_before_the_run(made) -> None:
    """The declared view count is checked against the view generator's by the config."""
    registry = registered()
    registry.registrar("view_generator", "t")("gen", object, views=made)
    registry.registrar("view_generator", "t")("pairs", object, views=2)

    class Selection:
        method = registry.get("method", "byol")
        view_generator = registry.get("view_generator", "gen")

    with pytest.raises(ConfigError, match=f"takes 2 views.*makes {made}"):
        check_views(Selection, None)
    Selection.view_generator = registry.get("view_generator", "pairs")
    check_views(Selection, None)


def test_plugin_module_imports_without_torch() -> None:
    """The entry point (listing plugins, ``ssl config``) does not pay for importing torch."""
    result = subprocess.run(
        [sys.executable, "-c", "import ssl_byol, sys; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "False"
