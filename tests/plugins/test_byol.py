"""The BYOL plugin: loss values, stop-gradient, target initialization and update, registration."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf
from ssl_byol import plugin
from ssl_byol.loss import byol_loss
from ssl_byol.model import BYOLModel
from ssl_byol.options import BYOLOptions
from torch import nn

from ssl_core.registry import Registry

TAU_BASE = 0.99


def tiny_backbone() -> nn.Module:
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16))
    backbone.num_features = 16
    return backbone


@pytest.fixture
def config():
    return OmegaConf.create(
        {
            "byol": {
                "tau_base": TAU_BASE,
                "proj_hidden_dim": 32,
                "proj_dim": 8,
                "pred_hidden_dim": 12,
            }
        }
    )


@pytest.fixture
def run(config) -> plugin.BYOLRun:
    return plugin.make_run(config)


@pytest.fixture
def model(run, config) -> BYOLModel:
    torch.manual_seed(0)
    model = run.ssl_build_heads(config=config, backbone=tiny_backbone())
    model.train()
    return model


def views(n: int = 2) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 8, 8, generator=generator) for _ in range(n)]


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
    loss = byol_loss(torch.tensor([p]), torch.tensor([z]))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_byol_loss_averages_over_the_batch() -> None:
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 5.0]])
    z = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    expected = (2.0 + 0.0 + (2.0 - math.sqrt(2.0)) + 0.0) / 4
    assert byol_loss(p, z).item() == pytest.approx(expected, abs=1e-6)


def test_byol_loss_is_float32_for_half_inputs() -> None:
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
    out = run.ssl_compute_loss(model=StubModel(), views=views(), step=0)
    # byol_loss(p1, z2) = 2 (orthogonal), byol_loss(p2, z1) = 2 − √2
    assert out["loss"].item() == pytest.approx(2.0 + 2.0 - math.sqrt(2.0), abs=1e-6)


def test_compute_loss_matches_the_pieces(run, model) -> None:
    v1, v2 = views()
    out = run.ssl_compute_loss(model=model, views=[v1, v2], step=0)
    # Forwarding the same views again in train mode gives the same BatchNorm batch statistics.
    expected = byol_loss(model.online(v1), model.target(v2)) + byol_loss(
        model.online(v2), model.target(v1)
    )
    assert out["loss"].shape == ()
    torch.testing.assert_close(out["loss"], expected)


@pytest.mark.parametrize("n", [1, 3])
def test_compute_loss_refuses_other_view_counts(run, model, n) -> None:
    with pytest.raises(ValueError, match=f"exactly 2 views.*made {n}"):
        run.ssl_compute_loss(model=model, views=views(n), step=0)


def test_gradients_reach_online_only(run, model) -> None:
    out = run.ssl_compute_loss(model=model, views=views(), step=0)
    out["loss"].backward()
    for name in ("online_encoder", "projector", "predictor"):
        params = list(getattr(model, name).parameters())
        assert params and all(p.grad is not None for p in params), name
    for name in ("target_encoder", "target_projector"):
        params = list(getattr(model, name).parameters())
        assert params and all(p.grad is None and not p.requires_grad for p in params), name


# --- model --------------------------------------------------------------------------------


def test_model_keeps_the_backbone_object(run, config) -> None:
    backbone = tiny_backbone()
    model = run.ssl_build_heads(config=config, backbone=backbone)
    assert model.online_encoder is backbone
    assert model.target_encoder is not backbone
    assert model.projector[0].in_features == 16
    assert model.projector[0].out_features == 32
    assert model.projector[-1].out_features == 8
    assert model.predictor[0].in_features == 8
    assert model.predictor[0].out_features == 12
    assert model.predictor[-1].out_features == 8


def test_target_starts_equal_to_online(model) -> None:
    online = model.online_parameters()
    target = model.target_parameters()
    assert len(online) == len(target)
    for o, t in zip(online, target, strict=True):
        assert o is not t
        torch.testing.assert_close(o, t, rtol=0, atol=0)


def test_predictor_is_online_only(model) -> None:
    predictor = {id(p) for p in model.predictor.parameters()}
    target = {id(p) for p in model.target_parameters()}
    assert predictor.isdisjoint(target)
    assert not any(name.startswith("target_predictor") for name, _ in model.named_modules())
    assert all(p.requires_grad for p in model.predictor.parameters())


def test_optimizer_would_get_exactly_the_online_parameters(model) -> None:
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    online = {id(p) for p in [*model.online_parameters(), *model.predictor.parameters()]}
    assert trainable == online


def test_target_bn_statistics_come_from_its_own_forward(run, model) -> None:
    before = model.target_projector[1].running_mean.clone()
    run.ssl_compute_loss(model=model, views=views(), step=0)
    assert not torch.equal(model.target_projector[1].running_mean, before)


def test_views_go_through_separately_unless_concat_views(config) -> None:
    # BatchNorm in train mode normalizes over its batch: by default each view is its own batch,
    # as in the paper; concat_views=true makes both views one batch of 8.
    v1, v2 = views()
    torch.manual_seed(0)
    separate = plugin.make_run(config).ssl_build_heads(config=config, backbone=tiny_backbone())
    config.byol.concat_views = True
    torch.manual_seed(0)
    joined = plugin.make_run(config).ssl_build_heads(config=config, backbone=tiny_backbone())
    joined.load_state_dict(separate.state_dict())
    (p1, p2), (z1, z2) = separate([v1, v2])
    torch.testing.assert_close(p1, separate.online(v1))
    torch.testing.assert_close(z2, separate.target(v2))
    (q1, q2), (y1, y2) = joined([v1, v2])
    both = torch.cat([v1, v2])
    torch.testing.assert_close(torch.cat([q1, q2]), separate.online(both))
    torch.testing.assert_close(torch.cat([y1, y2]), separate.target(both))
    assert q1.shape == p1.shape and not torch.allclose(q1, p1)


# --- target update ------------------------------------------------------------------------


def test_update_target_moves_by_one_minus_tau_base(run, model) -> None:
    with torch.no_grad():
        for param in model.online_parameters():
            param.add_(torch.randn_like(param))
    online = [p.detach().clone() for p in model.online_parameters()]
    target = [p.detach().clone() for p in model.target_parameters()]

    out = run.ssl_update_target(model=model, step=0, total_steps=10)

    assert out == {"tau": pytest.approx(TAU_BASE)}
    for before, theta, after in zip(target, online, model.target_parameters(), strict=True):
        torch.testing.assert_close(after, before + (1 - TAU_BASE) * (theta - before))
    for theta, now in zip(online, model.online_parameters(), strict=True):
        torch.testing.assert_close(now, theta, rtol=0, atol=0)


def test_update_target_follows_the_cosine_schedule(run, model) -> None:
    assert run.ssl_update_target(model=model, step=5, total_steps=10)["tau"] == pytest.approx(
        1 - (1 - TAU_BASE) / 2
    )
    assert run.ssl_update_target(model=model, step=10, total_steps=10)["tau"] == pytest.approx(1.0)


def test_update_target_leaves_target_buffers_alone(run, model) -> None:
    with torch.no_grad():
        model.projector[1].running_mean.fill_(5.0)
    run.ssl_update_target(model=model, step=0, total_steps=10)
    assert torch.equal(model.target_projector[1].running_mean, torch.zeros(32))


# --- options and registration -------------------------------------------------------------


def test_options_from_config(config) -> None:
    options = BYOLOptions.from_config(config)
    assert options == BYOLOptions(
        tau_base=TAU_BASE, proj_hidden_dim=32, proj_dim=8, pred_hidden_dim=12
    )


def test_options_default_to_the_paper() -> None:
    options = BYOLOptions.from_config(OmegaConf.create({}))
    assert options == BYOLOptions(
        tau_base=0.996,
        proj_hidden_dim=4096,
        proj_dim=256,
        pred_hidden_dim=4096,
        concat_views=False,
    )


def test_registers_byol_with_its_options() -> None:
    registry = Registry()
    plugin.ssl_register_methods(register=registry.registrar("method", "byol"))
    component = registry.get("method", "byol")
    assert component.name == "byol"
    assert component.options is BYOLOptions
    assert "Bootstrap Your Own Latent" in component.description
    assert isinstance(component.factory(OmegaConf.create({})), plugin.BYOLRun)


def test_plugin_module_imports_without_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import ssl_byol.plugin, sys; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "False"
