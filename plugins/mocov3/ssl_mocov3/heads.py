"""The MLP MoCo v3 uses for its projector and predictor."""

from __future__ import annotations

from torch import nn


class MLP(nn.Sequential):
    """``num_layers`` bias-free Linear layers: ``[B, in_dim]`` → ``[B, out_dim]``.

    Each hidden layer is Linear → BatchNorm → ReLU; with ``last_bn`` the output layer is
    followed by a BatchNorm without affine parameters. The ``_build_mlp`` of MoCo v3's
    reference code (Chen, Xie & He 2021, arXiv 2104.02057), which follows SimCLR in putting a
    BatchNorm on the output of the projector but not of the predictor.
    """

    def __init__(
        self, num_layers: int, in_dim: int, hidden_dim: int, out_dim: int, *, last_bn: bool
    ) -> None:
        layers: list[nn.Module] = []
        for index in range(num_layers):
            first = in_dim if index == 0 else hidden_dim
            last = index == num_layers - 1
            width = out_dim if last else hidden_dim
            layers.append(nn.Linear(first, width, bias=False))
            if not last:
                layers += [nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            elif last_bn:
                layers.append(nn.BatchNorm1d(width, affine=False))
        super().__init__(*layers)
