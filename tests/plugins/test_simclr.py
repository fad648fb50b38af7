"""The SimCLR plugin: NT-Xent by hand, against a direct formula and as rank 1 of 2; the head
and its one-batch forward; no target; registration."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from ssl_simclr import RECIPE, SimCLR, SimCLROptions, ssl_register_methods
from ssl_simclr import model as simclr_model
from ssl_simclr.model import nt_xent_loss
from torch import nn

from ssl_core import StepInfo
from ssl_core.methods.targets import update_declared_targets
from ssl_core.registry import Registry

sys.path.insert(0, str(Path(__file__).parent))
from wrapped import loss_through_wrapper  # noqa: E402

OPTIONS = SimCLROptions(temperature=0.5, proj_hidden_dim=32, proj_dim=8)


def tiny_backbone() -> nn.Module:
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16))
    backbone.num_features = 16
    return backbone


@pytest.fixture
def run() -> SimCLR:
    return SimCLR(OPTIONS)


@pytest.fixture
def model(run):
    torch.manual_seed(0)
    return run.ssl_build_heads(backbone=tiny_backbone()).train()


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


# --- loss ---------------------------------------------------------------------------------


def test_nt_xent_by_hand():
    """Two images, views equal and orthogonal to the other image, τ = 1: each anchor sees its
    positive at cosine 1 and two negatives at 0, so ℓ = log(1 + 2/e)."""
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert nt_xent_loss(z, z.clone(), 1.0).item() == pytest.approx(math.log(1 + 2 / math.e))


def test_nt_xent_matches_the_formula_anchor_by_anchor():
    """Random projections: the batched loss equals eq. 1 anchor by anchor."""
    generator = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=generator), torch.randn(5, 7, generator=generator)
    torch.testing.assert_close(nt_xent_loss(z1, z2, 0.1), nt_xent_direct(z1, z2, 0.1))


def test_nt_xent_against_the_projections_of_every_process(monkeypatch):
    """As rank 1 of 2: rank 0's rows come first in each gathered view, so this process's
    positives and self-pairs sit at rows 2 + i. Local views e₁, e₂ (both views equal), rank 0's
    e₃, e₄, τ = 1: each anchor has its positive at 1 and 6 negatives at 0 (4 in the other view
    but its positive, 3 in its own view but itself): ℓ = log(1 + 6/e)."""
    eye = torch.eye(4)
    others = eye[2:]
    monkeypatch.setattr(simclr_model, "gather", lambda t: torch.cat([others, t]))
    monkeypatch.setattr(simclr_model, "rank", lambda: 1)
    z = eye[:2]
    assert nt_xent_loss(z, z.clone(), 1.0).item() == pytest.approx(math.log(1 + 6 / math.e))


def test_nt_xent_sends_gradient_to_both_views():
    """No stop-gradient: both views get gradients."""
    z1 = torch.randn(3, 4, requires_grad=True)
    z2 = torch.randn(3, 4, requires_grad=True)
    nt_xent_loss(z1, z2, 0.5).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


def test_nt_xent_is_float32_for_half_inputs():
    """bf16 projections give a float32 loss."""
    z1, z2 = torch.randn(4, 8).bfloat16(), torch.randn(4, 8).bfloat16()
    loss = nt_xent_loss(z1, z2, 0.1)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(nt_xent_loss(z1.float(), z2.float(), 0.1).item())


def test_compute_loss_forwards_both_views_together(run, model):
    """BatchNorm sees all 2N images at once, as in the reference: the loss is that of one
    forward of the concatenated views."""
    v1, v2 = views()
    out = run.ssl_compute_loss(model=model, views=[v1, v2])
    z1, z2 = model.projector(model.encoder(torch.cat([v1, v2]))).chunk(2)
    torch.testing.assert_close(out["loss"], nt_xent_loss(z1, z2, 0.5))


def test_compute_loss_calls_the_model_once_through_a_data_parallel_wrapper(run, model):
    """The hook's one call ``model(views)`` goes through the data-parallel wrapper."""
    v = views()
    expected = run.ssl_compute_loss(model=model, views=v)["loss"]
    out, calls = loss_through_wrapper(run, model, v)
    assert calls == [2]
    torch.testing.assert_close(out["loss"], expected)


# --- head ---------------------------------------------------------------------------------


def test_head_and_no_target(model):
    """Head 16 → 32 → 8; every parameter trains; nothing declared for the core to update."""
    assert (model.projector[0].in_features, model.projector[0].out_features) == (16, 32)
    assert model.projector[-1].out_features == 8
    assert all(p.requires_grad for p in model.parameters())
    assert not hasattr(SimCLR, "ssl_update_target")
    assert update_declared_targets(model, StepInfo(0, 0, 1, 1)) == {}


def test_head_state_dict_keys_are_unchanged(model):
    """Linear(no bias) → BatchNorm → ReLU → Linear under the previous Sequential indices."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = [k for k in model.state_dict() if k.startswith("projector.")]
    assert keys == [
        "projector.0.weight",
        *(f"projector.1.{b}" for b in bn),
        "projector.3.weight",
        "projector.3.bias",
    ]


# --- options and registration -------------------------------------------------------------


def test_options_default_to_the_paper():
    """τ = 0.1, head 2048 wide with a 128-d output."""
    assert SimCLROptions() == SimCLROptions(temperature=0.1, proj_hidden_dim=2048, proj_dim=128)


def test_registers_simclr_with_two_views_and_its_recipe():
    """``method=simclr``: two views; LARS lr 0.3, colour distortion of strength 1."""
    registry = Registry()
    ssl_register_methods(register=registry.registrar("method", "simclr"))
    component = registry.get("method", "simclr")
    assert component.options is SimCLROptions
    assert component.views == (2, 2)
    defaults = component.defaults
    assert dict(defaults) == RECIPE
    assert (defaults["optim.name"], defaults["optim.lr"]) == ("lars", 0.3)
    assert (defaults["augment.brightness"], defaults["augment.hue"]) == (0.8, 0.2)
    assert isinstance(component.factory(OPTIONS), SimCLR)
