"""MoCo v3's networks and loss (Chen, Xie & He 2021, arXiv 2104.02057)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_core import EMA, forward_views, gather, mlp, momentum_copy, rank


def infonce_loss(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """ctr(q, k) = 2τ · CrossEntropy(q·kᵀ/τ, own key), q and k ℓ2-normalized (Algorithm 1).

    ``q`` and ``k`` (keys of the other view) are ``[B, d]`` on each process. Keys are gathered
    from every process, so each query is told apart from the keys of the global batch; its
    positive sits at row ``rank·B + i``. The 2τ factor makes the gradient scale free of τ.
    Returns a float32 scalar.
    """
    # fp32 even under autocast: logits divided by a small τ overflow in fp16.
    q = F.normalize(q.float(), dim=1)
    k = gather(F.normalize(k.detach().float(), dim=1))
    labels = torch.arange(q.shape[0], device=q.device) + q.shape[0] * rank()
    return F.cross_entropy(q @ k.T / temperature, labels) * (2.0 * temperature)


class MoCoV3Model(nn.Module):
    """Base encoder f_q (backbone + projector) with a predictor, and momentum encoder f_k.

    ``encoder`` is the backbone object itself (the engine evaluates and exports it); the
    momentum encoder and projector follow it by EMA (logged as ``momentum``).
    """

    def __init__(self, backbone: nn.Module, options: object) -> None:
        super().__init__()
        self.encoder = backbone
        self.projector = mlp(
            backbone.num_features,
            options.proj_hidden_dim,
            options.proj_dim,
            layers=options.proj_layers,
            last_batch_norm=True,
        )
        self.predictor = mlp(
            options.proj_dim, options.pred_hidden_dim, options.proj_dim, last_bias=False
        )
        self.momentum_encoder = momentum_copy(backbone)
        self.momentum_projector = momentum_copy(self.projector)
        self.ema = EMA(
            {"momentum_encoder": "encoder", "momentum_projector": "projector"},
            tau_base=options.momentum,
            metric="momentum",
        )

    def query(self, view: torch.Tensor) -> torch.Tensor:
        """q = predictor(projector(f(v)))."""
        return self.predictor(self.projector(self.encoder(view)))

    @torch.no_grad()
    def key(self, view: torch.Tensor) -> torch.Tensor:
        """k = projector_k(f_k(v)), without gradient."""
        return self.momentum_projector(self.momentum_encoder(view))

    def forward(self, views: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Queries and keys of each view; BatchNorm sees each view alone, as in the reference."""
        return forward_views(self, views, self.query), forward_views(self, views, self.key)
