"""The MoCo v3 plugin: InfoNCE by hand, heads, momentum encoder and its update, registration."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from ssl_mocov3 import plugin
from ssl_mocov3.loss import infonce_loss
from ssl_mocov3.options import MoCoV3Options
from torch import nn

from ssl_core.registry import Registry

MOMENTUM = 0.99


def tiny_backbone() -> nn.Module:
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16))
    backbone.num_features = 16
    return backbone


@pytest.fixture
def config():
    return OmegaConf.create(
        {
            "mocov3": {
                "momentum": MOMENTUM,
                "temperature": 0.5,
                "proj_hidden_dim": 32,
                "proj_dim": 8,
                "pred_hidden_dim": 12,
            }
        }
    )


@pytest.fixture
def run(config) -> plugin.MoCoV3Run:
    return plugin.make_run(config)


@pytest.fixture
def model(run, config):
    torch.manual_seed(0)
    return run.ssl_build_heads(config=config, backbone=tiny_backbone()).train()


def views(n: int = 2) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 8, 8, generator=generator) for _ in range(n)]


def test_infonce_by_hand():
    # Orthonormal queries and keys, τ = 1: each row's logits are (1, 0), its own key first,
    # so the cross entropy is log(1 + e⁻¹), times 2τ = 2.
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    k = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    assert infonce_loss(q, k, 1.0).item() == pytest.approx(2 * math.log(1 + math.exp(-1)))


def test_infonce_by_hand_with_a_temperature():
    # Row 0: q₀ = (1, 0) against k₀ = (0.6, 0.8), k₁ = (0, 1): logits (0.6, 0)/τ = (1.2, 0),
    # label 0; row 1: q₁ = (0, 1): (0.8, 1)/τ = (1.6, 2), label 1. τ = 0.5, so 2τ = 1.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    row0 = -1.2 + math.log(math.exp(1.2) + 1)
    row1 = -2.0 + math.log(math.exp(1.6) + math.exp(2.0))
    assert infonce_loss(q, k, 0.5).item() == pytest.approx((row0 + row1) / 2)


def test_infonce_gives_keys_no_gradient():
    q = torch.randn(3, 4, requires_grad=True)
    k = torch.randn(3, 4, requires_grad=True)
    infonce_loss(q, k, 0.2).backward()
    assert q.grad is not None and k.grad is None


def test_compute_loss_is_symmetric_over_the_views(run, model):
    v1, v2 = views()
    out = run.ssl_compute_loss(model=model, views=[v1, v2], step=0)
    q1, q2 = model.query(v1), model.query(v2)
    k1, k2 = model.key(v1), model.key(v2)
    expected = infonce_loss(q1, k2, 0.5) + infonce_loss(q2, k1, 0.5)
    torch.testing.assert_close(out["loss"], expected)


@pytest.mark.parametrize("n", [1, 3])
def test_compute_loss_refuses_other_view_counts(run, model, n):
    with pytest.raises(ValueError, match=f"exactly 2 views.*made {n}"):
        run.ssl_compute_loss(model=model, views=views(n), step=0)


def test_heads_follow_the_reference_shapes(model):
    linears = [m for m in model.projector if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 32), (32, 8)]
    assert isinstance(model.projector[-1], nn.BatchNorm1d) and not model.projector[-1].affine
    assert isinstance(model.predictor[-1], nn.Linear)  # no BatchNorm on the predictor's output
    assert (model.predictor[0].in_features, model.predictor[-1].out_features) == (8, 8)


def test_three_layer_projector_for_vit(config):
    config.mocov3.proj_layers = 3
    model = plugin.make_run(config).ssl_build_heads(config=config, backbone=tiny_backbone())
    assert sum(isinstance(m, nn.Linear) for m in model.projector) == 3


def test_momentum_encoder_starts_equal_and_takes_no_gradient(run, model):
    for o, t in zip(model.online_parameters(), model.target_parameters(), strict=True):
        assert o is not t and torch.equal(o, t) and not t.requires_grad
    out = run.ssl_compute_loss(model=model, views=views(), step=0)
    out["loss"].backward()
    assert all(p.grad is None for p in model.target_parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())
    assert not any(name.startswith("momentum_predictor") for name, _ in model.named_modules())


def test_update_moves_the_momentum_encoder_by_one_minus_m(run, model):
    with torch.no_grad():
        for param in model.online_parameters():
            param.add_(torch.randn_like(param))
    online = [p.detach().clone() for p in model.online_parameters()]
    target = [p.detach().clone() for p in model.target_parameters()]
    out = run.ssl_update_target(model=model, step=0, total_steps=10)
    assert out == {"momentum": pytest.approx(MOMENTUM)}
    for before, theta, after in zip(target, online, model.target_parameters(), strict=True):
        torch.testing.assert_close(after, before + (1 - MOMENTUM) * (theta - before))
    assert run.ssl_update_target(model=model, step=10, total_steps=10)["momentum"] == 1.0


def test_options_default_to_the_reference():
    assert MoCoV3Options.from_config(OmegaConf.create({})) == MoCoV3Options(
        temperature=1.0,
        momentum=0.99,
        proj_layers=2,
        proj_hidden_dim=4096,
        proj_dim=256,
        pred_hidden_dim=4096,
    )


def test_registers_mocov3_with_its_lars_recipe():
    registry = Registry()
    plugin.ssl_register_methods(register=registry.registrar("method", "mocov3"))
    component = registry.get("method", "mocov3")
    assert component.options is MoCoV3Options
    assert dict(component.defaults) == {
        "optim.name": "lars",
        "optim.lr": 0.6,
        "optim.weight_decay": 1e-6,
        "optim.warmup_epochs": 10.0,
    }


def test_queries_are_compared_in_fp32():
    q = torch.randn(4, 8, dtype=torch.bfloat16)
    k = torch.randn(4, 8, dtype=torch.bfloat16)
    loss = infonce_loss(q, k, 0.2)
    assert loss.dtype == torch.float32
    expected = infonce_loss(q.float(), k.float(), 0.2)
    assert loss.item() == pytest.approx(expected.item())
