"""The SimSiam plugin: loss values, stop-gradient, heads, no target, registration."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from ssl_simsiam import plugin
from ssl_simsiam.loss import negative_cosine, simsiam_loss
from ssl_simsiam.options import SimSiamOptions
from torch import nn

from ssl_core.registry import Registry


def tiny_backbone() -> nn.Module:
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16))
    backbone.num_features = 16
    return backbone


@pytest.fixture
def config():
    return OmegaConf.create(
        {"simsiam": {"proj_hidden_dim": 32, "proj_dim": 8, "pred_hidden_dim": 4}}
    )


@pytest.fixture
def run(config) -> plugin.SimSiamRun:
    return plugin.make_run(config)


@pytest.fixture
def model(run, config):
    torch.manual_seed(0)
    return run.ssl_build_heads(config=config, backbone=tiny_backbone()).train()


def views(n: int = 2) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 8, 8, generator=generator) for _ in range(n)]


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
    assert negative_cosine(torch.tensor([p]), torch.tensor([z])).item() == pytest.approx(expected)


def test_symmetric_loss_halves_each_direction():
    p1, z2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])  # D = -1
    p2, z1 = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]])  # D = -1/sqrt(2)
    expected = 0.5 * -1.0 + 0.5 * -1 / math.sqrt(2)
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(expected)


def test_stop_gradient_on_the_projection():
    p = torch.tensor([[1.0, 2.0]], requires_grad=True)
    z = torch.tensor([[3.0, -1.0]], requires_grad=True)
    negative_cosine(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None


def test_compute_loss_matches_the_pieces(run, model):
    v1, v2 = views()
    out = run.ssl_compute_loss(model=model, views=[v1, v2], step=0)
    (p1, z1), (p2, z2) = model(v1), model(v2)
    torch.testing.assert_close(out["loss"], simsiam_loss(p1, p2, z1, z2))
    assert -1.0 <= out["loss"].item() <= 1.0


@pytest.mark.parametrize("n", [1, 3])
def test_compute_loss_refuses_other_view_counts(run, model, n):
    with pytest.raises(ValueError, match=f"exactly 2 views.*made {n}"):
        run.ssl_compute_loss(model=model, views=views(n), step=0)


def test_heads_follow_the_paper_shapes(model):
    linears = [m for m in model.projector if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 32), (32, 32), (32, 8)]
    assert all(m.bias is None for m in linears)
    output_bn = model.projector[-1]
    assert isinstance(output_bn, nn.BatchNorm1d) and not output_bn.affine
    assert (model.predictor[0].in_features, model.predictor[0].out_features) == (8, 4)
    assert model.predictor[-1].out_features == 8


def test_no_target_every_parameter_trains_and_update_is_a_no_op(run, model):
    assert all(p.requires_grad for p in model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    assert run.ssl_update_target(model=model, step=0, total_steps=10) == {}
    for old, new in zip(before, model.parameters(), strict=True):
        assert torch.equal(old, new)


def test_options_default_to_the_paper():
    assert SimSiamOptions.from_config(OmegaConf.create({})) == SimSiamOptions(
        proj_hidden_dim=2048, proj_dim=2048, pred_hidden_dim=512
    )


def test_registers_simsiam_with_the_papers_sgd_recipe():
    registry = Registry()
    plugin.ssl_register_methods(register=registry.registrar("method", "simsiam"))
    component = registry.get("method", "simsiam")
    assert component.options is SimSiamOptions
    assert component.defaults["optim.name"] == "sgd"
    assert component.defaults["optim.lr"] == 0.05
    assert component.defaults["optim.weight_decay"] == 1e-4
    assert component.defaults["optim.warmup_epochs"] == 0.0
