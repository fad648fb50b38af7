"""The ``multicrop`` view generator: 2 global views and N smaller local crops per image.

Caron et al. 2021 (DINO, arXiv 2104.14294, §3.1 and appendix), after Caron et al. 2020 (SwAV,
arXiv 2006.09882): two global views of ``S x S`` pixels cut from 40–100% of the image, with
BYOL's asymmetric blur and solarize, and ``local_crops_number`` local views of about
``0.43·S`` pixels (96 for 224) cut from 5–40% of it, blurred with probability 0.5. Colour
jitter, grayscale and flip are as in BYOL. The views are made per image in the CPU workers
with the albumentations pipelines of :mod:`ssl_augment.albumentations_views`, so they come in
two sizes; the default collate stacks each position of the list on its own, and
:meth:`MultiCropViews.ssl_make_views` returns ``[global 1, global 2, local 1, ...]``.

This module is its own entry point (``multicrop``), so it imports no torch at its top level:
the transform imports torch and albumentations when it runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ssl_core import ConfigError, hookimpl, option

from .recipe import AugmentOptions, ViewRecipe

if TYPE_CHECKING:
    import torch

#: Local crops are never smaller than this many pixels: the strided stages of an encoder
#: need some extent left.
MIN_LOCAL_SIZE = 8


@dataclass
class MultiCropOptions(AugmentOptions):
    """Options of the multi-crop views (config group ``augment``, with ``augment=multicrop``).

    The crop, colour, blur and solarize options of :class:`AugmentOptions` describe the two
    global views (with DINO's crop area of 0.4–1); the ``local_*`` options the local crops.
    """

    crop_scale_min: float = option(
        0.4, "smallest global crop area, as a fraction of the image", min=0.01, max=1.0
    )
    crop_scale_max: float = option(
        1.0, "largest global crop area, as a fraction of the image", min=0.01, max=1.0
    )
    local_crops_number: int = option(8, "local crops per image (0: the global views only)", min=0)
    local_crop_size: float = option(
        0.43,
        "side of the local crops, as a fraction of data.image_size (96/224)",
        min=0.05,
        max=1.0,
    )
    local_crop_scale_min: float = option(
        0.05, "smallest local crop area, as a fraction of the image", min=0.01, max=1.0
    )
    local_crop_scale_max: float = option(
        0.4, "largest local crop area, as a fraction of the image", min=0.01, max=1.0
    )
    blur_prob_local: float = option(
        0.5, "probability of gaussian blur, local crops", min=0.0, max=1.0
    )

    def __post_init__(self) -> None:
        """An inverted range is a :class:`ConfigError`."""
        super().__post_init__()
        if self.local_crop_scale_min > self.local_crop_scale_max:
            raise ConfigError(
                f"augment.local_crop_scale_min={self.local_crop_scale_min} is larger than "
                f"augment.local_crop_scale_max={self.local_crop_scale_max}; the minimum "
                "must be <= the maximum"
            )

    def local_size(self, image_size: int) -> int:
        """Side of the local crops in pixels for global views of ``image_size`` pixels."""
        return min(image_size, max(MIN_LOCAL_SIZE, round(self.local_crop_size * image_size)))

    def crops(self, image_size: int) -> list[tuple[AugmentOptions, ViewRecipe, int]]:
        """``(options, recipe, size)`` of each view: the two global ones, then the locals."""
        local = dataclasses.replace(
            self,
            crop_scale_min=self.local_crop_scale_min,
            crop_scale_max=self.local_crop_scale_max,
        )
        local_recipe = ViewRecipe(blur_prob=self.blur_prob_local, solarize_prob=0.0)
        local_size = self.local_size(image_size)
        crops = [(self, recipe, image_size) for recipe in self.views()]
        crops += [(local, local_recipe, local_size)] * self.local_crops_number
        return crops


class MultiCropViews:
    """Run plugin of the ``multicrop`` view generator."""

    def __init__(self, options: MultiCropOptions, size: int) -> None:
        from .albumentations_views import MultiCrops

        self.size = size
        self.options = options
        # Built now: bad options fail here rather than in a worker (each builds its own).
        self.transform = MultiCrops(self.options, self.size)
        self.transform.build()

    @hookimpl
    def ssl_sample_transform(self) -> Callable[[Any], dict[str, Any]]:
        """All views are made here, per image, in the DataLoader workers."""
        return self.transform

    @hookimpl
    def ssl_make_views(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """The collated ``uint8`` views as ``float32`` in ``[0,1]``: 2 ``[B,3,S,S]``, N ``[B,3,s,s]``."""
        return [v.float().div_(255.0) for v in batch["views"]]


def make_run(options: MultiCropOptions, config: Any) -> MultiCropViews:
    """Factory of the ``multicrop`` generator's run plugin."""
    return MultiCropViews(options, int(config.data.image_size))


@hookimpl
def ssl_register_view_generators(register: Callable[..., None]) -> None:
    register(
        "multicrop",
        make_run,
        options=MultiCropOptions,
        views=lambda options: 2 + options.local_crops_number,
        description="2 global views and N smaller local crops per image (DINO, SwAV), CPU workers",
    )
