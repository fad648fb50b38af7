"""SimSiam's projector and predictor."""

from __future__ import annotations

from torch import nn


class Projector(nn.Sequential):
    """Three Linear → BatchNorm layers, ReLU after the first two: ``[B, D]`` → ``[B, out_dim]``.

    Chen & He 2021 (arXiv 2011.10566), §4.1: "BN applied to each fully-connected layer,
    including its output fc. Its output fc has no ReLU." The output BatchNorm has no affine
    parameters and the linear layers no bias, as in the reference code: a bias before a
    BatchNorm is cancelled by it.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim, bias=False),
            nn.BatchNorm1d(out_dim, affine=False),
        )


class Predictor(nn.Sequential):
    """Linear → BatchNorm → ReLU → Linear, a bottleneck: ``[B, dim]`` → ``[B, dim]``.

    Chen & He 2021 (arXiv 2011.10566), §4.1: the output fc has neither BN nor ReLU.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__(
            nn.Linear(dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, dim),
        )
