"""SimSiam's networks and loss (Chen & He 2021, arXiv 2011.10566)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_core import forward_views, mlp


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) = −cos(p, stopgrad(z)) averaged over the batch (eq. 1); float32 in [−1, 1]."""
    # fp32 even under autocast: the cosine of near-parallel vectors loses its signal in fp16.
    p = F.normalize(p.float(), dim=-1)
    z = F.normalize(z.detach().float(), dim=-1)
    return -(p * z).sum(dim=-1).mean()


def simsiam_loss(
    p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor
) -> torch.Tensor:
    """L = D(p₁, z₂)/2 + D(p₂, z₁)/2 (eq. 2); minimum −1 when aligned."""
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)


class SimSiamModel(nn.Module):
    """Encoder f (backbone + projector) and predictor h; every parameter trains.

    ``encoder`` is the backbone object itself (the engine evaluates and exports it). The
    projector's layers all end in BatchNorm, its output one without affine parameters (§4.1).
    """

    def __init__(self, backbone: nn.Module, options: object) -> None:
        super().__init__()
        self.encoder = backbone
        self.projector = mlp(
            backbone.num_features,
            options.proj_hidden_dim,
            options.proj_dim,
            layers=3,
            last_batch_norm=True,
        )
        self.predictor = mlp(options.proj_dim, options.pred_hidden_dim, options.proj_dim)

    def project(self, view: torch.Tensor) -> torch.Tensor:
        """z = g(f(v))."""
        return self.projector(self.encoder(view))

    def forward(self, views: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Predictions p = h(z) and projections z of each view; BatchNorm sees each view alone."""
        z = forward_views(self, views, self.project)
        return forward_views(self, z, self.predictor), z
