"""BYOL's networks and loss (Grill et al. 2020, arXiv 2006.07733)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_core import EMA, forward_views, mlp, momentum_copy


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ‖p/‖p‖ − z/‖z‖‖² = 2 − 2·cos(p, z), for one direction (eq. 2).

    ``p`` is the online prediction, ``z`` the target projection of the other view (no
    gradient), both ``[B, d]``; returns a float32 scalar.
    """
    # fp32 even under autocast: the cosine of near-parallel vectors loses its signal in fp16.
    p = F.normalize(p.float(), dim=-1)
    z = F.normalize(z.float(), dim=-1)
    return (2.0 - 2.0 * (p * z).sum(dim=-1)).mean()


class BYOLModel(nn.Module):
    """Online network f → g → q and target f_ξ → g_ξ, which follows f → g by EMA.

    ``online_encoder`` is the backbone object itself (the engine evaluates and exports it).
    Each view goes through on its own as far as BatchNorm is concerned, as in the reference;
    ``concat_views`` makes the two views one batch instead.
    """

    def __init__(self, backbone: nn.Module, options: object) -> None:
        super().__init__()
        self.online_encoder = backbone
        self.projector = mlp(backbone.num_features, options.proj_hidden_dim, options.proj_dim)
        self.predictor = mlp(options.proj_dim, options.pred_hidden_dim, options.proj_dim)
        self.target_encoder = momentum_copy(backbone)
        self.target_projector = momentum_copy(self.projector)
        self.ema = EMA(
            {"target_encoder": "online_encoder", "target_projector": "projector"},
            tau_base=options.tau_base,
            metric="tau",
        )
        self.concat_views = options.concat_views

    def online(self, view: torch.Tensor) -> torch.Tensor:
        """Online prediction p = q(g(f(v)))."""
        return self.predictor(self.projector(self.online_encoder(view)))

    @torch.no_grad()
    def target(self, view: torch.Tensor) -> torch.Tensor:
        """Target projection z' = g_ξ(f_ξ(v)), without gradient."""
        return self.target_projector(self.target_encoder(view))

    def forward(self, views: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Online predictions and target projections of each view, in the order of ``views``."""
        if self.concat_views:
            batch = torch.cat(views)
            return list(self.online(batch).chunk(len(views))), list(
                self.target(batch).chunk(len(views))
            )
        return forward_views(self, views, self.online), forward_views(self, views, self.target)
