"""The SimSiam plugin: loss values, stop-gradient, heads, per-view BatchNorm, no target, the
predictor's parameter group, registration. The predictor's learning rate in a real run is
checked in ``test_method_groups.py``."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from ssl_simsiam import RECIPE, SimSiam, SimSiamOptions, ssl_register_methods
from ssl_simsiam.model import negative_cosine, simsiam_loss
from torch import nn

from ssl_core import StepInfo
from ssl_core.methods.param_groups import check_groups
from ssl_core.methods.targets import update_declared_targets
from ssl_core.registry import Registry

sys.path.insert(0, str(Path(__file__).parent))
from wrapped import loss_through_wrapper  # noqa: E402

OPTIONS = SimSiamOptions(proj_hidden_dim=32, proj_dim=8, pred_hidden_dim=4)


def tiny_backbone() -> nn.Module:
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16))
    backbone.num_features = 16
    return backbone


@pytest.fixture
def run() -> SimSiam:
    return SimSiam(OPTIONS)


@pytest.fixture
def model(run):
    torch.manual_seed(0)
    return run.ssl_build_heads(backbone=tiny_backbone()).train()


def views(n: int = 2) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 8, 8, generator=generator) for _ in range(n)]


# --- loss ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "z", "expected"),
    [
        ([1.0, 0.0], [2.0, 0.0], -1.0),
        ([1.0, 0.0], [0.0, 3.0], 0.0),
        ([1.0, 0.0], [-1.0, 0.0], 1.0),
        ([1.0, 1.0], [1.0, 0.0], -1 / math.sqrt(2)),
    ],
)
def test_negative_cosine_by_hand(p, z, expected):
    """D(p, z) = −cos(p, z), whatever the norms."""
    assert negative_cosine(torch.tensor([p]), torch.tensor([z])).item() == pytest.approx(expected)


def test_symmetric_loss_halves_each_direction():
    """L = D(p₁, z₂)/2 + D(p₂, z₁)/2."""
    p1, z2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])  # D = -1
    p2, z1 = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]])  # D = -1/sqrt(2)
    expected = 0.5 * -1.0 + 0.5 * -1 / math.sqrt(2)
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(expected)


def test_stop_gradient_on_the_projection():
    """No gradient flows into z: the stop-gradient that prevents collapse."""
    p = torch.tensor([[1.0, 2.0]], requires_grad=True)
    z = torch.tensor([[3.0, -1.0]], requires_grad=True)
    negative_cosine(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None


def test_compute_loss_matches_the_pieces(run, model):
    """The hook's loss is that of the pieces run view by view (BatchNorm sees each view alone)."""
    v1, v2 = views()
    out = run.ssl_compute_loss(model=model, views=[v1, v2])
    z1, z2 = model.project(v1), model.project(v2)
    p1, p2 = model.predictor(z1), model.predictor(z2)
    torch.testing.assert_close(out["loss"], simsiam_loss(p1, p2, z1, z2))
    assert -1.0 <= out["loss"].item() <= 1.0


def test_forward_normalizes_each_view_on_its_own(model):
    """Per-view BatchNorm: the views in one pass give what separate passes give, unlike one
    batch of both views."""
    v1, v2 = views()
    (p1, p2), (z1, z2) = model([v1, v2])
    torch.testing.assert_close(z1, model.project(v1))
    torch.testing.assert_close(p2, model.predictor(model.project(v2)))
    joint = model.project(torch.cat([v1, v2]))[:4]
    assert not torch.allclose(z1, joint)


def test_compute_loss_calls_the_model_once_through_a_data_parallel_wrapper(run, model):
    """The hook's one call ``model(views)`` goes through the data-parallel wrapper."""
    v = views()
    expected = run.ssl_compute_loss(model=model, views=v)["loss"]
    out, calls = loss_through_wrapper(run, model, v)
    assert calls == [2]
    torch.testing.assert_close(out["loss"], expected)


def test_gradient_reaches_every_parameter(run, model):
    """Encoder, projector and predictor all get gradients (both branches train)."""
    run.ssl_compute_loss(model=model, views=views())["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


# --- heads --------------------------------------------------------------------------------


def test_heads_follow_the_paper_shapes(model):
    """Projector of 3 bias-free layers ending in an affine-free BatchNorm; predictor
    8 → 4 → 8."""
    linears = [m for m in model.projector if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 32), (32, 32), (32, 8)]
    assert all(m.bias is None for m in linears)
    output_bn = model.projector[-1]
    assert isinstance(output_bn, nn.BatchNorm1d) and not output_bn.affine
    assert (model.predictor[0].in_features, model.predictor[0].out_features) == (8, 4)
    assert model.predictor[-1].out_features == 8


def test_head_state_dict_keys_are_unchanged(model):
    """The Sequential indices of the previous heads, so old checkpoints load."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    stats = ["running_mean", "running_var", "num_batches_tracked"]
    projector = [k for k in model.state_dict() if k.startswith("projector.")]
    assert projector == [
        "projector.0.weight",
        *(f"projector.1.{b}" for b in bn),
        "projector.3.weight",
        *(f"projector.4.{b}" for b in bn),
        "projector.6.weight",
        *(f"projector.7.{s}" for s in stats),
    ]
    predictor = [k for k in model.state_dict() if k.startswith("predictor.")]
    assert predictor == [
        "predictor.0.weight",
        *(f"predictor.1.{b}" for b in bn),
        "predictor.3.weight",
        "predictor.3.bias",
    ]


def test_no_target_every_parameter_trains_and_the_core_updates_nothing(model):
    """SimSiam has no target: nothing declared, the core's update is a no-op returning {}."""
    assert all(p.requires_grad for p in model.parameters())
    assert not hasattr(SimSiam, "ssl_update_target")
    before = [p.detach().clone() for p in model.parameters()]
    assert update_declared_targets(model, StepInfo(0, 0, 10, 10)) == {}
    for old, new in zip(before, model.parameters(), strict=True):
        assert torch.equal(old, new)


# --- parameter groups ---------------------------------------------------------------------


def test_predictor_gets_its_own_fixed_lr_group(run, model):
    """§4.1: the predictor's rate is not decayed. Its parameters (weights and, apart,
    biases/norms) are groups with ``fixed_lr``; the rest follow the schedule; every trainable
    parameter is in exactly one group."""
    groups = run.ssl_param_groups(model=model)
    check_groups(model, groups, "simsiam")
    by_name = {g.name: g for g in groups}
    # The reference's SGD decays every parameter: biases and BatchNorm ones stay in their group.
    assert set(by_name) == {"default", "predictor"}
    predictor = {id(p) for p in model.predictor.parameters()}
    assert {id(p) for p in by_name["predictor"].params} == predictor
    assert by_name["predictor"].fixed_lr and not by_name["default"].fixed_lr
    assert by_name["predictor"].weight_decay is None  # follows optim.weight_decay
    assert by_name["default"].weight_decay is None


def test_without_fixed_predictor_lr_the_predictor_joins_the_default_groups(model):
    """``simsiam.fixed_predictor_lr=false``: no group of its own, so it decays like the rest."""
    options = SimSiamOptions(**{**vars(OPTIONS), "fixed_predictor_lr": False})
    groups = SimSiam(options).ssl_param_groups(model=model)
    check_groups(model, groups, "simsiam")
    assert [g.name for g in groups] == ["default"]
    assert not any(g.fixed_lr for g in groups)


# --- options and registration -------------------------------------------------------------


def test_options_default_to_the_paper():
    """ResNet-50 heads 2048/2048/512, predictor learning rate fixed."""
    assert SimSiamOptions() == SimSiamOptions(
        proj_hidden_dim=2048, proj_dim=2048, pred_hidden_dim=512, fixed_predictor_lr=True
    )


def test_registers_simsiam_with_two_views_and_the_papers_sgd_recipe():
    """``method=simsiam``: two views; SGD, lr 0.05 × batch/256, wd 1e-4, no warm-up."""
    registry = Registry()
    ssl_register_methods(register=registry.registrar("method", "simsiam"))
    component = registry.get("method", "simsiam")
    assert component.options is SimSiamOptions
    assert component.views == (2, 2)
    assert dict(component.defaults) == RECIPE
    assert component.defaults["optim.name"] == "sgd"
    assert component.defaults["optim.lr"] == 0.05
    assert component.defaults["optim.weight_decay"] == 1e-4
    assert component.defaults["optim.warmup_epochs"] == 0.0
    assert isinstance(component.factory(OPTIONS), SimSiam)
