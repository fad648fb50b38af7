"""The MoCo v3 plugin: InfoNCE by hand (one process and as rank 1 of 2), heads, per-view
BatchNorm, the momentum encoder and the core's update of it, registration."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from ssl_mocov3 import RECIPE, MoCoV3, MoCoV3Options, ssl_register_methods
from ssl_mocov3 import model as mocov3_model
from ssl_mocov3.model import infonce_loss
from torch import nn

from ssl_core import EMA, StepInfo
from ssl_core.methods.targets import update_declared_targets
from ssl_core.registry import Registry

sys.path.insert(0, str(Path(__file__).parent))
from wrapped import loss_through_wrapper  # noqa: E402

MOMENTUM = 0.99
OPTIONS = MoCoV3Options(
    momentum=MOMENTUM, temperature=0.5, proj_hidden_dim=32, proj_dim=8, pred_hidden_dim=12
)


def tiny_backbone() -> nn.Module:
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16))
    backbone.num_features = 16
    return backbone


@pytest.fixture
def run() -> MoCoV3:
    return MoCoV3(OPTIONS)


@pytest.fixture
def model(run):
    torch.manual_seed(0)
    return run.ssl_build_heads(backbone=tiny_backbone()).train()


def views(n: int = 2) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 8, 8, generator=generator) for _ in range(n)]


def online_parameters(model) -> list[nn.Parameter]:
    """The base encoder and projector, the modules the momentum encoder follows."""
    return [*model.encoder.parameters(), *model.projector.parameters()]


def target_parameters(model) -> list[nn.Parameter]:
    """The momentum encoder and projector, in the order of :func:`online_parameters`."""
    return [*model.momentum_encoder.parameters(), *model.momentum_projector.parameters()]


# --- loss ---------------------------------------------------------------------------------


def test_infonce_by_hand():
    """Orthonormal queries and keys, τ = 1: each row's logits are (1, 0), its own key first,
    so the cross entropy is log(1 + e⁻¹), times 2τ = 2."""
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    k = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    assert infonce_loss(q, k, 1.0).item() == pytest.approx(2 * math.log(1 + math.exp(-1)))


def test_infonce_by_hand_with_a_temperature():
    """Row 0: q₀ = (1, 0) against k₀ = (0.6, 0.8), k₁ = (0, 1): logits (0.6, 0)/τ = (1.2, 0),
    label 0; row 1: q₁ = (0, 1): (0.8, 1)/τ = (1.6, 2), label 1. τ = 0.5, so 2τ = 1."""
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    row0 = -1.2 + math.log(math.exp(1.2) + 1)
    row1 = -2.0 + math.log(math.exp(1.6) + math.exp(2.0))
    assert infonce_loss(q, k, 0.5).item() == pytest.approx((row0 + row1) / 2)


def test_infonce_against_the_keys_of_every_process(monkeypatch):
    """As rank 1 of 2: the keys of rank 0 come first in the gathered batch, so the positive of
    local query i is row 2 + i. Queries e₁, e₂, own keys e₁, e₂, rank 0's keys e₃, e₄, τ = 1:
    each row has logit 1 at its positive and 0 at the 3 others: 2·log(1 + 3/e)."""
    eye = torch.eye(4)
    others = eye[2:]
    monkeypatch.setattr(mocov3_model, "gather", lambda t: torch.cat([others, t]))
    monkeypatch.setattr(mocov3_model, "rank", lambda: 1)
    loss = infonce_loss(eye[:2], eye[:2].clone(), 1.0)
    assert loss.item() == pytest.approx(2 * math.log(1 + 3 / math.e))


def test_infonce_gives_keys_no_gradient():
    """Stop-gradient on the keys."""
    q = torch.randn(3, 4, requires_grad=True)
    k = torch.randn(3, 4, requires_grad=True)
    infonce_loss(q, k, 0.2).backward()
    assert q.grad is not None and k.grad is None


def test_queries_are_compared_in_fp32():
    """bf16 queries and keys give a float32 loss with the float32 value."""
    q = torch.randn(4, 8, dtype=torch.bfloat16)
    k = torch.randn(4, 8, dtype=torch.bfloat16)
    loss = infonce_loss(q, k, 0.2)
    assert loss.dtype == torch.float32
    expected = infonce_loss(q.float(), k.float(), 0.2)
    assert loss.item() == pytest.approx(expected.item())


def test_compute_loss_is_symmetric_over_the_views(run, model):
    """L = ctr(q₁, k₂) + ctr(q₂, k₁), each view through the networks on its own."""
    v1, v2 = views()
    out = run.ssl_compute_loss(model=model, views=[v1, v2])
    q1, q2 = model.query(v1), model.query(v2)
    k1, k2 = model.key(v1), model.key(v2)
    expected = infonce_loss(q1, k2, 0.5) + infonce_loss(q2, k1, 0.5)
    torch.testing.assert_close(out["loss"], expected)


def test_forward_normalizes_each_view_on_its_own(model):
    """Per-view BatchNorm, as in the reference: one pass equals separate passes, not one batch."""
    v1, v2 = views()
    (q1, _), (k1, k2) = model([v1, v2])
    torch.testing.assert_close(q1, model.query(v1))
    torch.testing.assert_close(k2, model.key(v2))
    assert not torch.allclose(k1, model.key(torch.cat([v1, v2]))[:4])


def test_compute_loss_calls_the_model_once_through_a_data_parallel_wrapper(run, model):
    """The hook's one call ``model(views)`` goes through the data-parallel wrapper."""
    v = views()
    expected = run.ssl_compute_loss(model=model, views=v)["loss"]
    out, calls = loss_through_wrapper(run, model, v)
    assert calls == [2]
    torch.testing.assert_close(out["loss"], expected)


# --- heads --------------------------------------------------------------------------------


def test_heads_follow_the_reference_shapes(model):
    """Projector 16 → 32 → 8 ending in an affine-free BatchNorm; predictor without output
    BatchNorm; every linear layer without bias."""
    linears = [m for m in model.projector if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 32), (32, 8)]
    assert isinstance(model.projector[-1], nn.BatchNorm1d) and not model.projector[-1].affine
    assert isinstance(model.predictor[-1], nn.Linear)  # no BatchNorm on the predictor's output
    assert (model.predictor[0].in_features, model.predictor[-1].out_features) == (8, 8)
    heads = [*model.projector, *model.predictor]
    assert all(m.bias is None for m in heads if isinstance(m, nn.Linear))


def test_head_state_dict_keys_are_unchanged(model):
    """The Sequential indices of the previous heads, so old checkpoints load."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    stats = ["running_mean", "running_var", "num_batches_tracked"]
    for head in ("projector", "momentum_projector"):
        keys = [k for k in model.state_dict() if k.startswith(f"{head}.")]
        assert keys == [
            f"{head}.0.weight",
            *(f"{head}.1.{b}" for b in bn),
            f"{head}.3.weight",
            *(f"{head}.4.{s}" for s in stats),
        ]
    predictor = [k for k in model.state_dict() if k.startswith("predictor.")]
    assert predictor == [
        "predictor.0.weight",
        *(f"predictor.1.{b}" for b in bn),
        "predictor.3.weight",
    ]


def test_three_layer_projector_for_vit():
    """``proj_layers=3`` (the ViT recipe) gives three linear layers."""
    options = MoCoV3Options(**{**vars(OPTIONS), "proj_layers": 3})
    model = MoCoV3(options).ssl_build_heads(backbone=tiny_backbone())
    assert sum(isinstance(m, nn.Linear) for m in model.projector) == 3


# --- the momentum encoder, updated by the core --------------------------------------------


def test_momentum_encoder_starts_equal_and_takes_no_gradient(run, model):
    """f_k starts as a copy of f_q; the loss sends it no gradient; no momentum predictor."""
    for o, t in zip(online_parameters(model), target_parameters(model), strict=True):
        assert o is not t and torch.equal(o, t) and not t.requires_grad
    out = run.ssl_compute_loss(model=model, views=views())
    out["loss"].backward()
    assert all(p.grad is None for p in target_parameters(model))
    assert all(p.grad is not None for p in model.predictor.parameters())
    assert not any(name.startswith("momentum_predictor") for name, _ in model.named_modules())


def test_model_declares_its_momentum_encoder_for_the_core(model):
    """Declared, not updated by the method: logged as ``momentum``, m from the options."""
    assert isinstance(model.ema, EMA)
    assert model.ema.pairs == {
        "momentum_encoder": "encoder",
        "momentum_projector": "projector",
    }
    assert (model.ema.tau_base, model.ema.metric) == (MOMENTUM, "momentum")
    assert not hasattr(MoCoV3, "ssl_update_target")


# m = 1 − (1 − m₀)·(cos(πk/K) + 1)/2: k = 0 → 0.99; k = K/2 → 0.995; k = K → 1
@pytest.mark.parametrize(("step", "m"), [(0, 0.99), (5, 0.995), (10, 1.0)])
def test_core_update_moves_the_momentum_encoder_by_one_minus_m(model, step, m):
    """After an optimizer step the core moves θ_k ← θ_k + (1 − m)·(θ_q − θ_k) and logs m;
    the query side stays as it is."""
    torch.manual_seed(2)
    with torch.no_grad():
        for param in online_parameters(model):
            param.add_(torch.randn_like(param))
    online = [p.detach().clone() for p in online_parameters(model)]
    target = [p.detach().clone() for p in target_parameters(model)]
    out = update_declared_targets(model, StepInfo(step, 0, 10, 10))
    assert out == {"momentum": pytest.approx(m, abs=1e-12)}
    for before, theta, after in zip(target, online, target_parameters(model), strict=True):
        torch.testing.assert_close(after, before + (1 - m) * (theta - before))
    for theta, now in zip(online, online_parameters(model), strict=True):
        torch.testing.assert_close(now, theta, rtol=0, atol=0)


# --- options and registration -------------------------------------------------------------


def test_options_default_to_the_reference():
    """The reference's ResNet-50 recipe: τ = 1, m = 0.99, 2-layer projector, 4096/256/4096."""
    assert MoCoV3Options() == MoCoV3Options(
        temperature=1.0,
        momentum=0.99,
        proj_layers=2,
        proj_hidden_dim=4096,
        proj_dim=256,
        pred_hidden_dim=4096,
    )


def test_registers_mocov3_with_two_views_and_its_lars_recipe():
    """``method=mocov3``: two views; LARS, lr 0.6, wd 1e-6, 10 warm-up epochs."""
    registry = Registry()
    ssl_register_methods(register=registry.registrar("method", "mocov3"))
    component = registry.get("method", "mocov3")
    assert component.options is MoCoV3Options
    assert component.views == (2, 2)
    assert (
        dict(component.defaults)
        == RECIPE
        == {
            "optim.name": "lars",
            "optim.lr": 0.6,
            "optim.weight_decay": 1e-6,
            "optim.warmup_epochs": 10.0,
        }
    )
    assert isinstance(component.factory(OPTIONS), MoCoV3)
