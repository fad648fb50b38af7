"""The BYOL model: online encoder, projector and predictor, and the target that follows them."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .heads import MLPHead
from .options import BYOLOptions


class BYOLModel(nn.Module):
    """BYOL's online network f → g → q and target f_ξ → g_ξ (Grill et al. 2020, arXiv 2006.07733).

    ``online_encoder`` is the backbone object itself (the engine evaluates and exports it);
    ``projector`` maps its ``D = backbone.num_features`` features to ``proj_dim`` and
    ``predictor`` maps those to ``proj_dim`` again, online branch only. ``target_encoder`` and
    ``target_projector`` start as copies of the online ones, never receive gradients
    (``requires_grad=False``) and move only through the EMA update after each optimizer step.
    The target runs in the same train/eval mode as the online network, so its BatchNorm
    statistics come from its own forward passes.
    """

    def __init__(self, backbone: nn.Module, options: BYOLOptions) -> None:
        super().__init__()
        num_features = getattr(backbone, "num_features", None)
        if not isinstance(num_features, int):
            raise TypeError(
                f"BYOL needs a backbone exposing an int `num_features`; "
                f"{type(backbone).__name__} has {num_features!r}"
            )
        self.online_encoder = backbone
        self.projector = MLPHead(num_features, options.proj_hidden_dim, options.proj_dim)
        self.predictor = MLPHead(options.proj_dim, options.pred_hidden_dim, options.proj_dim)
        self.concat_views = options.concat_views
        self.target_encoder = copy.deepcopy(backbone)
        self.target_projector = copy.deepcopy(self.projector)
        for param in self.target_parameters():
            param.requires_grad_(False)

    def online_parameters(self) -> list[nn.Parameter]:
        """Online encoder and projector parameters, in the order of :meth:`target_parameters`."""
        return [*self.online_encoder.parameters(), *self.projector.parameters()]

    def target_parameters(self) -> list[nn.Parameter]:
        """Parameters of the target encoder and projector, each following its online twin."""
        return [*self.target_encoder.parameters(), *self.target_projector.parameters()]

    def online(self, view: torch.Tensor) -> torch.Tensor:
        """Online prediction p = q(g(f(v))): ``[B, 3, H, W]`` to ``[B, proj_dim]``."""
        return self.predictor(self.projector(self.online_encoder(view)))

    @torch.no_grad()
    def target(self, view: torch.Tensor) -> torch.Tensor:
        """Target projection z' = g_ξ(f_ξ(v)), no gradient: ``[B, 3, H, W]`` → ``[B, proj_dim]``."""
        return self.target_projector(self.target_encoder(view))

    def forward(self, views: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Online predictions and target projections of each view, in the order of ``views``.

        By default BatchNorm normalizes each view over its own batch, as in the reference,
        where each view goes through separately; here both go through in one pass
        (:func:`ssl_core.views.forward_views`), which gives the same numbers faster. With
        ``concat_views`` the views are simply one batch: faster still, but BatchNorm's
        statistics (and its running averages) then mix both views.
        """
        from ssl_core.methods.per_view_batchnorm import forward_views

        if self.concat_views:
            batch = torch.cat(views)
            predictions = list(self.online(batch).chunk(len(views)))
            projections = list(self.target(batch).chunk(len(views)))
            return predictions, projections
        return forward_views(self, views, self.online), forward_views(self, views, self.target)
