"""SimCLR's projection head."""

from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Sequential):
    """Linear → BatchNorm → ReLU → Linear: ``[B, D]`` → ``[B, out_dim]``.

    The non-linear head g of Chen et al. 2020 (arXiv 2002.05709, §2.1), with the BatchNorm of
    its reference code on the hidden layer (which has no bias, BatchNorm's shift replaces it).
    The loss is computed on its output; the representation kept is the backbone's.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
