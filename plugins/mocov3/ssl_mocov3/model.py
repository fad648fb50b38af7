"""The MoCo v3 model: query encoder, predictor, and the momentum encoder that follows them."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .heads import MLP
from .options import MoCoV3Options


class MoCoV3Model(nn.Module):
    """Base encoder f_q (backbone + projector), predictor, momentum encoder f_k.

    Chen, Xie & He 2021 (arXiv 2104.02057). ``encoder`` is the backbone object itself (the
    engine evaluates and exports it). ``momentum_encoder`` and ``momentum_projector`` start as
    copies of the online ones, never receive gradients (``requires_grad=False``) and move only
    through the EMA update after each optimizer step; they run in the same train/eval mode,
    so their BatchNorm statistics come from their own forward passes.
    """

    def __init__(self, backbone: nn.Module, options: MoCoV3Options) -> None:
        super().__init__()
        num_features = getattr(backbone, "num_features", None)
        if not isinstance(num_features, int):
            raise TypeError(
                f"MoCo v3 needs a backbone exposing an int `num_features`; "
                f"{type(backbone).__name__} has {num_features!r}"
            )
        self.encoder = backbone
        self.projector = MLP(
            options.proj_layers,
            num_features,
            options.proj_hidden_dim,
            options.proj_dim,
            last_bn=True,
        )
        self.predictor = MLP(
            2, options.proj_dim, options.pred_hidden_dim, options.proj_dim, last_bn=False
        )
        self.momentum_encoder = copy.deepcopy(backbone)
        self.momentum_projector = copy.deepcopy(self.projector)
        for param in self.target_parameters():
            param.requires_grad_(False)

    def online_parameters(self) -> list[nn.Parameter]:
        """Encoder and projector parameters, in the order of :meth:`target_parameters`."""
        return [*self.encoder.parameters(), *self.projector.parameters()]

    def target_parameters(self) -> list[nn.Parameter]:
        """Momentum encoder and projector parameters, each following its online twin."""
        return [*self.momentum_encoder.parameters(), *self.momentum_projector.parameters()]

    def query(self, view: torch.Tensor) -> torch.Tensor:
        """q = predictor(projector(f(v))): ``[B, 3, H, W]`` → ``[B, proj_dim]``."""
        return self.predictor(self.projector(self.encoder(view)))

    @torch.no_grad()
    def key(self, view: torch.Tensor) -> torch.Tensor:
        """k = projector_k(f_k(v)), no gradient: ``[B, 3, H, W]`` → ``[B, proj_dim]``."""
        return self.momentum_projector(self.momentum_encoder(view))

    def forward(self, views: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Queries and keys of each view, in the order of ``views``, one view at a time."""
        return [self.query(v) for v in views], [self.key(v) for v in views]
