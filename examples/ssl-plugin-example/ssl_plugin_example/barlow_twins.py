"""Barlow Twins (Zbontar et al. 2021, arXiv 2103.03230): model, loss and run plugin."""

from __future__ import annotations

from typing import Any

import torch
from ssl_core import UserError, hookimpl
from ssl_core.training import distributed
from torch import nn

from .options import BarlowTwinsOptions

#: Views Barlow Twins compares: the cross-correlation of their embeddings.
NUM_VIEWS = 2


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> torch.Tensor:
    """Σᵢ(1 − Cᵢᵢ)² + λ·Σᵢ Σⱼ≠ᵢ Cᵢⱼ² with C the cross-correlation of the standardized embeddings.

    ``z1`` and ``z2`` are ``[B, d]`` embeddings of the two views on this process. Both are
    gathered from every process first, so the standardization (zero mean, unit variance per
    dimension over the batch, as the reference's affine-free BatchNorm does) and C (``[d, d]``,
    eq. 2 of the paper) use the global batch. Returns a float32 scalar.
    """
    z1 = distributed.gather(z1.float())
    z2 = distributed.gather(z2.float())
    batch = z1.shape[0]
    z1 = nn.functional.batch_norm(z1, None, None, training=True)
    z2 = nn.functional.batch_norm(z2, None, None, training=True)
    c = z1.T @ z2 / batch
    on_diag = (torch.diagonal(c) - 1.0).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


class Projector(nn.Sequential):
    """(Linear → BatchNorm → ReLU) × 2 → Linear: ``[B, D]`` → ``[B, proj_dim]`` (paper, §4)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim, bias=False),
        )


class BarlowTwinsModel(nn.Module):
    """Encoder and projector shared by both views; no target network.

    ``encoder`` must be the backbone object the engine built: the engine evaluates and exports
    it, so the model holds it rather than a copy.
    """

    def __init__(self, backbone: nn.Module, options: BarlowTwinsOptions) -> None:
        super().__init__()
        self.encoder = backbone
        self.projector = Projector(backbone.num_features, options.proj_hidden_dim, options.proj_dim)

    def forward(self, view: torch.Tensor) -> torch.Tensor:
        return self.projector(self.encoder(view))


class BarlowTwinsRun:
    """The run plugin of ``method=barlow_twins``: one object per run, answering the step hooks."""

    def __init__(self, options: BarlowTwinsOptions) -> None:
        self.options = options

    @hookimpl
    def ssl_build_heads(self, config: Any, backbone: nn.Module) -> BarlowTwinsModel:
        return BarlowTwinsModel(backbone, self.options)

    @hookimpl
    def ssl_compute_loss(
        self, model: BarlowTwinsModel, views: list[torch.Tensor], step: int
    ) -> dict[str, torch.Tensor]:
        if len(views) != NUM_VIEWS:
            # A UserError reaches the user as one line, without a traceback.
            raise UserError(
                f"method=barlow_twins needs exactly {NUM_VIEWS} views per step; the view "
                f"generator made {len(views)}"
            )
        z1, z2 = model(views[0]), model(views[1])
        return {"loss": barlow_twins_loss(z1, z2, self.options.lambd)}

    @hookimpl
    def ssl_update_target(
        self, model: BarlowTwinsModel, step: int, total_steps: int
    ) -> dict[str, float]:
        return {}  # no target network
