"""The ``kornia`` view generator: BYOL views split between the workers and the device.

The geometry of each view is drawn per sample and cut on ``uint8`` in the DataLoader workers
(:class:`ssl_augment.crops.CropFlip`): a random resized crop of the full-resolution image, drawn
as the ``albumentations`` generator draws it, and the horizontal flip; each image travels as
two ``S x S`` crops. :meth:`KorniaViews.ssl_make_views` then runs the photometric part of the two
pipelines of :mod:`ssl_augment.recipe` (colour jitter, grayscale, blur, solarize) on the batch
where it lives (the GPU under CUDA), every random parameter drawn per sample. The reference
splits the work the same way: crops on the host, the rest per image on the accelerator.

What is left different:

- from the reference and from ``albumentations``: Kornia's colour jitter draws its random order
  once per call (per batch; per chunk of a few MB on the CPU), not per image; its four factors
  are drawn per image.
- from ``albumentations``: the photometric steps run in float32 on the crops, which are rounded
  to ``uint8`` once, after the resize; the albumentations pipelines round after each op, and
  OpenCV's 8-bit HSV quantizes their hue shifts to 1/180 of a turn.
- from ``albumentations``: the crop boxes are drawn from torch's generator, albumentations'
  from its own: the same distribution (``tests/plugins/test_view_crops.py``), other draws for
  a given seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ssl_core import hookimpl

from .crops import CropFlip
from .recipe import AugmentOptions, ViewRecipe, blur_kernel_size

Op = Callable[[torch.Tensor], torch.Tensor]

# On the CPU a freshly allocated tensor over glibc's mmap threshold (32 MB; one 224-px batch of
# 64 is 38 MB) is page-faulted anew on every op. Working through the batch in chunks of a few MB
# keeps the buffers in the reused heap and in cache: about 1.4 times as fast at 224 px.
_CPU_CHUNK_BYTES = 8 << 20


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
    """The photometric part of one BYOL view: ``[B,3,S,S]`` crops to a ``float32`` view in ``[0,1]``.

    Takes the crops as ``uint8`` (or float in ``[0,1]``) on any device and returns a new tensor
    there: colour jitter, grayscale, blur and solarize with the recipe's probabilities, every
    parameter drawn per sample. Built once per run; each call draws anew. The input is not
    modified.
    """

    def __init__(self, options: AugmentOptions, recipe: ViewRecipe, size: int) -> None:
        import kornia.augmentation as K

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
            (jitter, options.jitter_prob),
            (K.RandomGrayscale(p=1.0), options.grayscale_prob),
            (blur, recipe.blur_prob),
            (solarize, recipe.solarize_prob),
        ]

    def _view(self, crops: torch.Tensor) -> torch.Tensor:
        # A float copy of its own: the steps may write into their input.
        view = crops.to(torch.float32, copy=True)
        if crops.dtype == torch.uint8:
            view.div_(255.0)
        for op, prob in self.steps:
            view = _sometimes(op, prob, view)
        return view

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        batch = crops.shape[0]
        step = batch
        if crops.device.type == "cpu":
            step = max(1, _CPU_CHUNK_BYTES // (4 * crops[0].numel()))
        if step >= batch:
            views = self._view(crops)
        else:
            views = torch.empty(crops.shape, dtype=torch.float32, device=crops.device)
            for start in range(0, batch, step):
                views[start : start + step] = self._view(crops[start : start + step])
        # Blur and grayscale weights sum to 1 only up to rounding.
        return views.clamp_(0.0, 1.0)


class KorniaViews:
    """Run plugin of the ``kornia`` view generator (two pipelines, built once per run)."""

    def __init__(self, options: AugmentOptions, size: int) -> None:
        self.size = size
        self.options = options
        self.pipelines = [ViewPipeline(self.options, r, self.size) for r in self.options.views()]
        self.transform = CropFlip(self.options, self.size, views=len(self.pipelines))

    @hookimpl
    def ssl_sample_transform(self) -> CropFlip:
        """Workers cut each view's crop and flip from the full image, on ``uint8``."""
        return self.transform

    @hookimpl
    def ssl_make_views(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """Two ``float32 [B,3,S,S]`` views in ``[0,1]`` of ``batch["crops"]`` (``uint8``)."""
        crops = batch["crops"]
        return [pipeline(c) for pipeline, c in zip(self.pipelines, crops, strict=True)]
