"""The ``kornia`` view generator: BYOL views made on the training device, drawn per sample.

DataLoader workers only centre-crop and resize each image to ``S x S`` (:class:`CenterSquare`);
:meth:`KorniaViews.ssl_make_views` then runs the two pipelines of :mod:`ssl_augment.recipe` on the
batch where it lives (the GPU under CUDA), every random parameter drawn per sample.

Unavoidable differences from the reference (and from the ``albumentations`` generator):

- the random resized crop is cut from the centred ``S x S`` square the workers send, not from
  the full image: the margins of a non-square image are never seen, and a small crop is
  up-sampled from ``S``-pixel data, so it is softer than one cut from the full-resolution image.
- colour jitter draws its random order once per call (per batch; per chunk on the CPU), not
  per image; its four factors are drawn per image.
- everything runs in float32; the albumentations pipelines round to ``uint8`` after each op.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ssl_core import hookimpl

from .recipe import CROP_RATIO, AugmentOptions, ViewRecipe, as_rgb, blur_kernel_size

Op = Callable[[torch.Tensor], torch.Tensor]

# On the CPU a freshly allocated tensor over glibc's mmap threshold (32 MB; one 224-px batch of
# 64 is 38 MB) is page-faulted anew on every op. Working through the batch in chunks of a few MB
# keeps the buffers in the reused heap and in cache: about 1.4 times as fast at 224 px.
_CPU_CHUNK_BYTES = 8 << 20


class CenterSquare:
    """Sample transform: the centred square of an image, resized to ``size`` pixels.

    Takes a ``uint8`` ``HxWx3`` array of any size; returns ``{"image": uint8 [3,S,S]}``.
    Picklable (it holds one int), so it runs in DataLoader workers.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Any) -> dict[str, torch.Tensor]:
        import cv2
        import numpy as np

        array = as_rgb(image)
        height, width = array.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = array[top : top + side, left : left + side]
        if side != self.size:
            # INTER_AREA averages when shrinking (no aliasing); bilinear when enlarging.
            interpolation = cv2.INTER_AREA if side > self.size else cv2.INTER_LINEAR
            square = cv2.resize(
                np.ascontiguousarray(square), (self.size, self.size), interpolation=interpolation
            )
        return {"image": torch.from_numpy(np.ascontiguousarray(square.transpose(2, 0, 1)))}


def rotate_hue(image: torch.Tensor, radians: torch.Tensor) -> torch.Tensor:
    """Shift the hue of ``[B,3,H,W]`` images in ``[0,1]`` by ``radians`` (``[B]``).

    The same result as :func:`kornia.enhance.adjust_hue` (an HSV round trip, as PIL and
    torchvision do), computed straight from RGB: a hue shift keeps each pixel's max and min, so
    every channel is ``max - chroma * w(hue + shift)`` with a piecewise-linear ``w``.
    """
    maxc = image.amax(dim=-3)
    minc = image.amin(dim=-3)
    chroma = maxc - minc
    red, green, blue = image.unbind(dim=-3)
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    # Hue in sextants, [0, 6) up to the shift; grey pixels get any hue (chroma 0 cancels it).
    hue = torch.where(
        maxc == red,
        (green - blue) / safe,
        torch.where(maxc == green, (blue - red) / safe + 2.0, (red - green) / safe + 4.0),
    )
    hue += (radians * (3.0 / math.pi)).to(image.dtype).view(-1, 1, 1)
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=image.dtype, device=image.device)
    k = torch.remainder(hue.unsqueeze(-3) + offsets.view(1, 3, 1, 1), 6.0)
    weight = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc.unsqueeze(-3) - chroma.unsqueeze(-3) * weight


def _sometimes(op: Op, prob: float, images: torch.Tensor) -> torch.Tensor:
    """``op`` applied to each sample with probability ``prob``; may write into ``images``.

    Kornia's own ``p`` runs the op on the whole batch and blends: right on a GPU (no host
    sync), wasteful on the CPU, where only the drawn samples are computed.
    """
    if prob <= 0.0:
        return images
    if prob >= 1.0:
        return op(images)
    drawn = torch.rand(images.shape[0], device=images.device) < prob
    if images.device.type != "cpu":
        return torch.where(drawn.view(-1, 1, 1, 1), op(images), images)
    chosen = drawn.nonzero().squeeze(1)
    if chosen.numel() == 0:
        return images
    if chosen.numel() == images.shape[0]:
        return op(images)
    return images.index_copy_(0, chosen, op(images.index_select(0, chosen)))


class ViewPipeline:
    """One BYOL view: ``float32 [B,3,S,S]`` in ``[0,1]`` to a view of the same shape.

    Built once per run; each call draws new parameters per sample. The input is not modified.
    """

    def __init__(self, options: AugmentOptions, recipe: ViewRecipe, size: int) -> None:
        import kornia.augmentation as K

        self.size = size
        self.crop = K.RandomResizedCrop(
            (size, size),
            scale=(options.crop_scale_min, options.crop_scale_max),
            ratio=CROP_RATIO,
            align_corners=False,
        )
        # ColorJitter (not ColorJiggle) has torchvision/PIL semantics: brightness multiplies,
        # contrast and saturation blend with the grey mean / grey image.
        jitter = K.ColorJitter(
            options.brightness, options.contrast, options.saturation, options.hue, p=1.0
        )
        if hasattr(jitter, "_hue_fn"):
            # Same hue shift as kornia's HSV round trip in fewer passes.
            jitter._hue_fn = rotate_hue
        kernel = blur_kernel_size(size)
        blur = K.RandomGaussianBlur(
            (kernel, kernel),
            (options.blur_sigma_min, options.blur_sigma_max),
            border_type="reflect",
            separable=True,
            p=1.0,
        )
        # Kornia draws the solarize threshold around 0.5 by default; BYOL's is exactly 0.5.
        solarize = K.RandomSolarize(thresholds=0.0, additions=0.0, p=1.0)
        self.steps: list[tuple[Op, float]] = [
            (K.RandomHorizontalFlip(p=1.0), options.flip_prob),
            (jitter, options.jitter_prob),
            (K.RandomGrayscale(p=1.0), options.grayscale_prob),
            (blur, recipe.blur_prob),
            (solarize, recipe.solarize_prob),
        ]

    def _view(self, images: torch.Tensor) -> torch.Tensor:
        view = self.crop(images)
        if view.data_ptr() == images.data_ptr():
            # The steps below may write into their input; the caller's batch feeds both views.
            view = view.clone()
        for op, prob in self.steps:
            view = _sometimes(op, prob, view)
        return view

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]
        views = torch.empty(
            (batch, 3, self.size, self.size), dtype=images.dtype, device=images.device
        )
        step = batch
        if images.device.type == "cpu":
            step = max(1, _CPU_CHUNK_BYTES // (3 * self.size * self.size * images.element_size()))
        for start in range(0, batch, step):
            views[start : start + step] = self._view(images[start : start + step])
        # Blur and grayscale weights sum to 1 only up to rounding.
        return views.clamp_(0.0, 1.0)


class KorniaViews:
    """Run plugin of the ``kornia`` view generator (two pipelines, built once per run)."""

    def __init__(self, options: AugmentOptions, size: int) -> None:
        self.size = size
        self.options = options
        self.pipelines = [ViewPipeline(self.options, r, self.size) for r in self.options.views()]

    @hookimpl
    def ssl_sample_transform(self) -> CenterSquare:
        """Workers only centre-crop and resize; the views are made on the device."""
        return CenterSquare(self.size)

    @hookimpl
    def ssl_make_views(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """Two ``float32 [B,3,S,S]`` views in ``[0,1]`` of ``batch["image"]`` (``uint8``)."""
        images = batch["image"].float().div_(255.0)
        return [pipeline(images) for pipeline in self.pipelines]
