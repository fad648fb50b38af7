"""The SimCLR model: one encoder and projection head shared by both views."""

from __future__ import annotations

import torch
from torch import nn

from .heads import ProjectionHead
from .options import SimCLROptions


class SimCLRModel(nn.Module):
    """Encoder f and projection head g (Chen et al. 2020, arXiv 2002.05709).

    ``encoder`` is the backbone object itself (the engine evaluates and exports it). No
    target and no predictor: every parameter trains.
    """

    def __init__(self, backbone: nn.Module, options: SimCLROptions) -> None:
        super().__init__()
        num_features = getattr(backbone, "num_features", None)
        if not isinstance(num_features, int):
            raise TypeError(
                f"SimCLR needs a backbone exposing an int `num_features`; "
                f"{type(backbone).__name__} has {num_features!r}"
            )
        self.encoder = backbone
        self.projector = ProjectionHead(num_features, options.proj_hidden_dim, options.proj_dim)

    def forward(self, view: torch.Tensor) -> torch.Tensor:
        """z = g(f(v)): ``[B, 3, H, W]`` → ``[B, proj_dim]``."""
        return self.projector(self.encoder(view))
