"""BYOL's regression loss between an online prediction and a target projection."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ‖p/‖p‖ − z/‖z‖‖² = 2 − 2·cos(p, z), for one direction.

    ``p`` is the online prediction and ``z`` the target projection of the other view, both
    ``[B, d]``; returns a float32 scalar (Grill et al. 2020, arXiv 2006.07733, eq. 2). The
    caller detaches ``z`` (stop-gradient) and sums the two directions.
    """
    # fp32 even under autocast: the cosine of near-parallel vectors loses its signal in fp16.
    p = F.normalize(p.float(), dim=-1)
    z = F.normalize(z.float(), dim=-1)
    return (2.0 - 2.0 * (p * z).sum(dim=-1)).mean()
