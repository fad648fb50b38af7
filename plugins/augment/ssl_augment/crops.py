"""The geometry of BYOL's views, drawn per sample and cut on ``uint8`` in the DataLoader workers.

:class:`CropFlip` is the sample transform of the ``kornia`` generator: for each view it draws a
random resized crop of the full-resolution image (:func:`crop_box`, torchvision's
``RandomResizedCrop.get_params``) and a horizontal flip, and cuts them on the ``uint8`` image
(:func:`resized_crop`, resized as albumentations' ``RandomResizedCrop`` resizes), so that each
image travels to the training device as two ``S x S`` crops. Every draw comes from torch's CPU
generator, which the loader seeds per sample: the crops are a function of the run's seed, the
epoch and the sample, whatever the number of workers.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import torch

from .recipe import CROP_RATIO, AugmentOptions, as_rgb

#: ``(top, left, height, width)`` of a crop, in pixels of the full image.
Box = tuple[int, int, int, int]


@functools.lru_cache(maxsize=8)
def _log_ratio(ratio: tuple[float, float]) -> tuple[float, float]:
    # In float32, as torchvision computes it, so that the draws are bit for bit its draws.
    low, high = torch.log(torch.tensor(ratio)).tolist()
    return low, high


def crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = CROP_RATIO,
    generator: torch.Generator | None = None,
) -> Box:
    """A random resized crop's box in a ``height x width`` image, drawn from ``generator``.

    torchvision's ``RandomResizedCrop.get_params``, draw for draw (the default generator gives
    its very boxes): up to 10 attempts of an area uniform in ``scale`` times the image's and an
    aspect ratio (width / height) log-uniform in ``ratio``, the first that fits placed uniformly;
    else the largest centred crop whose aspect ratio is clamped to ``ratio``.
    """
    area = height * width
    log_low, log_high = _log_ratio((float(ratio[0]), float(ratio[1])))
    draw = torch.empty(1)
    for _ in range(10):
        target_area = area * draw.uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(draw.uniform_(log_low, log_high, generator=generator)).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(array: Any, box: Box, size: int) -> Any:
    """``box`` of a ``uint8`` ``HxWxC`` array resized to ``size x size``, still ``uint8``.

    Area averaging when either side shrinks (no aliasing, as PIL), bilinear otherwise: the
    interpolation albumentations' ``RandomResizedCrop(area_for_downscale="image")`` picks, so a
    box gives the same pixels from either generator.
    """
    import cv2

    top, left, h, w = box
    crop = array[top : top + h, left : left + w]
    if (h, w) == (size, size):
        return crop
    interpolation = cv2.INTER_AREA if h > size or w > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def single_threaded_in_workers() -> None:
    """In a DataLoader worker, OpenCV on one thread: the workers already run in parallel, and
    OpenCV's own threads would oversubscribe the CPU (torch likewise runs workers on one)."""
    if torch.utils.data.get_worker_info() is not None:
        import cv2

        cv2.setNumThreads(1)


class CropFlip:
    """Sample transform: the geometry of each view, cut from the full image on ``uint8``.

    Takes a ``uint8`` ``HxWx3`` array of any size; returns ``{"crops": [uint8 [3,S,S]] * views}``,
    each a random resized crop (:func:`crop_box` with ``options``' scale) flipped horizontally
    with ``options.flip_prob``. Draws from torch's default CPU generator. Picklable (numbers
    only), so it runs in DataLoader workers.
    """

    def __init__(self, options: AugmentOptions, size: int, views: int = 2) -> None:
        self.scale = (float(options.crop_scale_min), float(options.crop_scale_max))
        self.flip_prob = float(options.flip_prob)
        self.size = size
        self.views = views
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pid": -1}

    def draw(self, height: int, width: int) -> list[tuple[Box, bool]]:
        """Each view's box and flip for a ``height x width`` image, as :meth:`__call__` draws them."""
        draws = []
        for _ in range(self.views):
            box = crop_box(height, width, self.scale)
            # torchvision's RandomHorizontalFlip draws the same way.
            draws.append((box, bool(torch.rand(1).item() < self.flip_prob)))
        return draws

    def __call__(self, image: Any) -> dict[str, list[torch.Tensor]]:
        import numpy as np

        if self._pid != os.getpid():
            self._pid = os.getpid()
            single_threaded_in_workers()
        array = as_rgb(image)
        crops = []
        for box, flip in self.draw(*array.shape[:2]):
            crop = resized_crop(array, box, self.size)
            if flip:
                crop = crop[:, ::-1]
            crops.append(torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))))
        return {"crops": crops}
