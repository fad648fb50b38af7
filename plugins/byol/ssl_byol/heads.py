"""The MLP head BYOL uses for both its projector and its predictor."""

from __future__ import annotations

from torch import nn


class MLPHead(nn.Sequential):
    """Linear → BatchNorm1d → ReLU → Linear: ``[B, in_dim]`` to ``[B, out_dim]``.

    The projector g (D→4096→256) and predictor q (256→4096→256) of BYOL
    (Grill et al. 2020, arXiv 2006.07733) both have this shape.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(
            # BatchNorm's own shift makes a bias on this layer redundant.
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )
        self.in_dim = in_dim
        self.hidden_dim = hidden_dim
        self.out_dim = out_dim
