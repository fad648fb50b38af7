"""The SimCLR plugin: NT-Xent by hand and against a direct formula, head, registration."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from ssl_simclr import plugin
from ssl_simclr.loss import nt_xent_loss
from ssl_simclr.options import SimCLROptions
from torch import nn

from ssl_core.registry import Registry


def tiny_backbone() -> nn.Module:
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16))
    backbone.num_features = 16
    return backbone


@pytest.fixture
def config():
    return OmegaConf.create({"simclr": {"temperature": 0.5, "proj_hidden_dim": 32, "proj_dim": 8}})


@pytest.fixture
def run(config) -> plugin.SimCLRRun:
    return plugin.make_run(config)


@pytest.fixture
def model(run, config):
    torch.manual_seed(0)
    return run.ssl_build_heads(config=config, backbone=tiny_backbone()).train()


def views(n: int = 2) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 8, 8, generator=generator) for _ in range(n)]


def nt_xent_direct(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    """Eq. 1 of the paper written out over the 2N projections, one anchor at a time."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / t
    losses = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        others = [sim[i, k] for k in range(2 * n) if k != i]
        losses.append(-sim[i, positive] + torch.logsumexp(torch.stack(others), dim=0))
    return torch.stack(losses).mean()


def test_nt_xent_by_hand():
    # Two images, views equal and orthogonal to the other image, τ = 1: each anchor sees its
    # positive at cosine 1 and two negatives at 0, so ℓ = log(1 + 2/e).
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert nt_xent_loss(z, z.clone(), 1.0).item() == pytest.approx(math.log(1 + 2 / math.e))


def test_nt_xent_matches_the_formula_anchor_by_anchor():
    generator = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=generator), torch.randn(5, 7, generator=generator)
    torch.testing.assert_close(nt_xent_loss(z1, z2, 0.1), nt_xent_direct(z1, z2, 0.1))


def test_nt_xent_sends_gradient_to_both_views():
    z1 = torch.randn(3, 4, requires_grad=True)
    z2 = torch.randn(3, 4, requires_grad=True)
    nt_xent_loss(z1, z2, 0.5).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


def test_compute_loss_forwards_both_views_together(run, model):
    v1, v2 = views()
    out = run.ssl_compute_loss(model=model, views=[v1, v2], step=0)
    z1, z2 = model(torch.cat([v1, v2])).chunk(2)
    torch.testing.assert_close(out["loss"], nt_xent_loss(z1, z2, 0.5))


@pytest.mark.parametrize("n", [1, 3])
def test_compute_loss_refuses_other_view_counts(run, model, n):
    with pytest.raises(ValueError, match=f"exactly 2 views.*made {n}"):
        run.ssl_compute_loss(model=model, views=views(n), step=0)


def test_head_and_no_target(run, model):
    assert (model.projector[0].in_features, model.projector[0].out_features) == (16, 32)
    assert model.projector[-1].out_features == 8
    assert all(p.requires_grad for p in model.parameters())
    assert run.ssl_update_target(model=model, step=0, total_steps=1) == {}


def test_options_default_to_the_paper():
    assert SimCLROptions.from_config(OmegaConf.create({})) == SimCLROptions(
        temperature=0.1, proj_hidden_dim=2048, proj_dim=128
    )


def test_registers_simclr_with_its_recipe():
    registry = Registry()
    plugin.ssl_register_methods(register=registry.registrar("method", "simclr"))
    defaults = registry.get("method", "simclr").defaults
    assert (defaults["optim.name"], defaults["optim.lr"]) == ("lars", 0.3)
    assert (defaults["augment.brightness"], defaults["augment.hue"]) == (0.8, 0.2)
