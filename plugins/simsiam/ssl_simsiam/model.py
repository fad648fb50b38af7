"""The SimSiam model: one encoder and projector shared by both views, and a predictor."""

from __future__ import annotations

import torch
from torch import nn

from .heads import Predictor, Projector
from .options import SimSiamOptions


class SimSiamModel(nn.Module):
    """Encoder f (backbone + projector) and predictor h (Chen & He 2021, arXiv 2011.10566).

    ``encoder`` is the backbone object itself (the engine evaluates and exports it). There is
    no target network: both views go through the same weights, and every parameter trains.
    """

    def __init__(self, backbone: nn.Module, options: SimSiamOptions) -> None:
        super().__init__()
        num_features = getattr(backbone, "num_features", None)
        if not isinstance(num_features, int):
            raise TypeError(
                f"SimSiam needs a backbone exposing an int `num_features`; "
                f"{type(backbone).__name__} has {num_features!r}"
            )
        self.encoder = backbone
        self.projector = Projector(num_features, options.proj_hidden_dim, options.proj_dim)
        self.predictor = Predictor(options.proj_dim, options.pred_hidden_dim)

    def forward(self, view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prediction p = h(z) and projection z = g(f(v)) of one view, each ``[B, proj_dim]``.

        Views go through one at a time: concatenating them would make BatchNorm normalize
        over both views at once, which is not the recipe.
        """
        z = self.projector(self.encoder(view))
        return self.predictor(z), z
