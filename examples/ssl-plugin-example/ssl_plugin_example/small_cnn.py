"""``small_cnn``: a four-block convolutional encoder for small images, not found in timm."""

from __future__ import annotations

from typing import Any

import torch
from ssl_core import hookimpl
from torch import nn


def _block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        # BatchNorm's shift makes a bias redundant.
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Four 3×3 conv blocks (``w, 2w, 4w, 8w`` channels, the last three of stride 2) and a
    global average pool: ``[B, 3, H, W]`` normalized images of any size → ``[B, 8w]``.

    ``num_features`` is what every ssl_core backbone must expose: the width of its output.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(3, width, 1),
            _block(width, 2 * width, 2),
            _block(2 * width, 4 * width, 2),
            _block(4 * width, 8 * width, 2),
        )
        self.num_features = 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


class SmallCNNBackbone:
    """The run plugin of ``backbone=small_cnn``."""

    def __init__(self, options: Any) -> None:
        self.options = options

    @hookimpl
    def ssl_build_backbone(self) -> SmallCNN:
        return SmallCNN(self.options.width)
