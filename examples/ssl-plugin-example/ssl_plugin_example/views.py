"""``crop_flip``: two views made on the training device in plain torch, drawn per sample.

The DataLoader workers only cut the centred square of each image and resize it to ``S``
(:class:`CenterSquare`); :meth:`CropFlipViews.ssl_make_views` then draws, for every image of
the batch and each view, a random resized crop with horizontal flip (one ``grid_sample``),
brightness and contrast factors, and grayscale.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from ssl_core import hookimpl

#: Aspect-ratio range (width / height) of the random crops.
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
#: ITU-R 601 luma weights, as torchvision's grayscale.
LUMA = (0.299, 0.587, 0.114)


class CenterSquare:
    """Sample transform: the centred square of a ``uint8`` ``HxWx3`` image, ``S x S``.

    Returns ``{"image": uint8 [3,S,S]}``. Picklable (it holds one int): it runs in workers.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        array = array[:, :, :3]
        height, width = array.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = torch.from_numpy(
            np.ascontiguousarray(array[top : top + side, left : left + side])
        ).permute(2, 0, 1)
        if side != self.size:
            square = (
                F.interpolate(
                    square[None].float(),
                    size=(self.size, self.size),
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )[0]
                .round()
                .clamp(0, 255)
                .to(torch.uint8)
            )
        return {"image": square.contiguous()}


def random_crop_flip(images: torch.Tensor, scale_min: float, flip_prob: float) -> torch.Tensor:
    """A random resized crop (area in ``[scale_min, 1]``) and flip of each image, same size."""
    batch = images.shape[0]
    device = images.device
    area = torch.empty(batch, device=device).uniform_(scale_min, 1.0)
    log_ratio = torch.empty(batch, device=device).uniform_(*map(math.log, CROP_RATIO))
    ratio = log_ratio.exp()
    width = (area * ratio).sqrt().clamp(max=1.0)
    height = (area / ratio).sqrt().clamp(max=1.0)
    # Crop centres keep the crop inside the image (coordinates in [-1, 1]).
    cx = (torch.rand(batch, device=device) * 2 - 1) * (1 - width)
    cy = (torch.rand(batch, device=device) * 2 - 1) * (1 - height)
    flip = torch.where(torch.rand(batch, device=device) < flip_prob, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = height
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", align_corners=False)


def jitter(images: torch.Tensor, options: Any) -> torch.Tensor:
    """Per-image brightness and contrast factors, then grayscale with ``grayscale_prob``."""
    batch = images.shape[0]
    shape = (batch, 1, 1, 1)
    luma = torch.tensor(LUMA, device=images.device).view(1, 3, 1, 1)
    b = options.brightness
    images = images * torch.empty(shape, device=images.device).uniform_(1 - b, 1 + b)
    c = options.contrast
    mean = (images * luma).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    factor = torch.empty(shape, device=images.device).uniform_(1 - c, 1 + c)
    images = (images - mean) * factor + mean
    gray = (images * luma).sum(dim=1, keepdim=True).expand_as(images)
    drawn = torch.rand(shape, device=images.device) < options.grayscale_prob
    return torch.where(drawn, gray, images).clamp(0.0, 1.0)


class CropFlipViews:
    """Run plugin of the ``crop_flip`` view generator."""

    def __init__(self, options: Any, size: int) -> None:
        self.options = options
        self.size = size

    @hookimpl
    def ssl_sample_transform(self) -> CenterSquare:
        return CenterSquare(self.size)

    @hookimpl
    def ssl_make_views(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """Two ``float32 [B,3,S,S]`` views in ``[0,1]`` of ``batch["image"]`` (``uint8``)."""
        images = batch["image"].float() / 255.0
        return [
            jitter(
                random_crop_flip(images, self.options.crop_scale_min, self.options.flip_prob),
                self.options,
            )
            for _ in range(2)
        ]
