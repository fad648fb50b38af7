"""SimCLR's network and NT-Xent loss (Chen et al. 2020, arXiv 2002.05709)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_core import gather, mlp, rank


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (eq. 1), averaged over all 2N anchors of the global batch.

    ``z1`` and ``z2`` are ``[B, d]`` projections of the two views on this process; row ``i``
    of one is the positive of row ``i`` of the other. Each anchor's negatives are the other
    2N − 2 projections of the global batch (gathered across processes, the gradient flowing
    back to the local rows); similarities are cosines divided by ``temperature``. Returns a
    float32 scalar.
    """
    # fp32 even under autocast: logits divided by a small τ overflow in fp16.
    z1 = F.normalize(z1.float(), dim=1)
    z2 = F.normalize(z2.float(), dim=1)
    all1, all2 = gather(z1), gather(z2)
    # Where this process's rows sit in the gathered batch: the positives and the self-pairs.
    own = torch.arange(z1.shape[0], device=z1.device) + z1.shape[0] * rank()
    self_pair = F.one_hot(own, all1.shape[0]).bool()
    # Anchor from view 1: positive in view 2, negatives in view 2 and in view 1 but itself.
    logits_12 = z1 @ all2.T / temperature
    logits_11 = (z1 @ all1.T / temperature).masked_fill(self_pair, float("-inf"))
    logits_21 = z2 @ all1.T / temperature
    logits_22 = (z2 @ all2.T / temperature).masked_fill(self_pair, float("-inf"))
    logits = torch.cat(
        [torch.cat([logits_12, logits_11], dim=1), torch.cat([logits_21, logits_22], dim=1)]
    )
    return F.cross_entropy(logits, own.repeat(2))


class SimCLRModel(nn.Module):
    """Encoder f and projection head g; ``encoder`` is the backbone object itself."""

    def __init__(self, backbone: nn.Module, options: object) -> None:
        super().__init__()
        self.encoder = backbone
        self.projector = mlp(backbone.num_features, options.proj_hidden_dim, options.proj_dim)

    def forward(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        """z = g(f(v)) of each view, in one pass: BatchNorm sees all 2N images, as in the
        reference."""
        return list(self.projector(self.encoder(torch.cat(views))).chunk(len(views)))
