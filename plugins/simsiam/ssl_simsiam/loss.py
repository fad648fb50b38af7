"""SimSiam's symmetric negative-cosine loss with stop-gradient."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) = −cos(p, stopgrad(z)), averaged over the batch.

    ``p`` (a prediction) and ``z`` (a projection of the other view) are ``[B, d]``; ``z`` is
    detached here, which is the stop-gradient of Chen & He 2021 (arXiv 2011.10566, eq. 1).
    Returns a float32 scalar in [−1, 1].
    """
    # fp32 even under autocast: the cosine of near-parallel vectors loses its signal in fp16.
    p = F.normalize(p.float(), dim=-1)
    z = F.normalize(z.detach().float(), dim=-1)
    return -(p * z).sum(dim=-1).mean()


def simsiam_loss(
    p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor
) -> torch.Tensor:
    """L = D(p₁, z₂)/2 + D(p₂, z₁)/2 (Chen & He 2021, eq. 2); minimum −1 when aligned."""
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)
