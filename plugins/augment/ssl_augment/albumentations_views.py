"""The ``albumentations`` view generator: both BYOL views made per image in the CPU workers.

:class:`TwoViews` runs the two pipelines of :mod:`ssl_augment.recipe` on each full image, the
random resized crop cut from it at full resolution as the reference does on the host;
:meth:`AlbumentationsViews.ssl_make_views` only converts the collated views to float.

The crop boxes follow torchvision's algorithm, as the ``kornia`` generator's do
(:func:`ssl_augment.crops.crop_box`), and are resized the same way: area averaging when
shrinking (anti-aliased, as PIL does), bilinear when enlarging.

Unavoidable differences from the reference (and from the ``kornia`` generator):

- the pipelines work on ``uint8`` images and round after each op, and OpenCV's 8-bit HSV keeps
  hue in 2-degree steps, so a hue shift is quantized to 1/180 of a turn.
"""

from __future__ import annotations

import os
import random
from typing import Any

import torch

from ssl_core import hookimpl

from .crops import Box, single_threaded_in_workers
from .recipe import CROP_RATIO, AugmentOptions, ViewRecipe, as_rgb, blur_kernel_size


def build_pipeline(
    options: AugmentOptions,
    recipe: ViewRecipe,
    size: int,
    seed: int,
    *,
    save_applied_params: bool = False,
) -> Any:
    """One view's ``albumentations.Compose``: ``uint8 HxWx3`` of any size to ``S x S``.

    ``save_applied_params`` makes each output carry the parameters drawn (the crop's box).
    """
    import albumentations as A

    kernel = blur_kernel_size(size)
    return A.Compose(
        [
            A.RandomResizedCrop(
                size=(size, size),
                scale=(options.crop_scale_min, options.crop_scale_max),
                ratio=CROP_RATIO,
                area_for_downscale="image",
            ),
            A.HorizontalFlip(p=options.flip_prob),
            # Random order of the four steps, torchvision's formulas.
            A.ColorJitter(
                brightness=options.brightness,
                contrast=options.contrast,
                saturation=options.saturation,
                hue=options.hue,
                p=options.jitter_prob,
            ),
            A.ToGray(num_output_channels=3, method="weighted_average", p=options.grayscale_prob),
            A.GaussianBlur(
                blur_limit=(kernel, kernel),
                sigma_limit=(options.blur_sigma_min, options.blur_sigma_max),
                p=recipe.blur_prob,
            ),
            # threshold_range is a fraction of 255: pixels >= 127.5 (128 and up) are inverted.
            A.Solarize(threshold_range=(0.5, 0.5), p=recipe.solarize_prob),
        ],
        seed=seed,
        save_applied_params=save_applied_params,
    )


class PipelineViews:
    """Base of the sample transforms made of one albumentations pipeline per view.

    Takes a ``uint8`` ``HxWx3`` array of any size; returns ``{"views": [uint8 [3,s,s], ...]}``,
    one view per entry of :meth:`crops`. Picklable: the pipelines are rebuilt in each process
    that calls it, and every call draws their random state from torch's RNG, which the loader
    seeds per sample, so views depend neither on the number of workers nor on where a resumed
    run restarted.
    """

    def __init__(self, options: AugmentOptions, size: int) -> None:
        self.options = options
        self.size = size
        self._pipelines: list[Any] = []
        self._recording: list[Any] = []
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options, "size": self.size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["options"], state["size"])

    def crops(self) -> list[tuple[AugmentOptions, ViewRecipe, int]]:
        """``(options, recipe, size)`` of each view, in the order they are returned."""
        raise NotImplementedError

    def build(self) -> None:
        """(Re)build the pipelines for this process."""
        single_threaded_in_workers()
        self._pipelines = [
            build_pipeline(options, recipe, size, seed=0) for options, recipe, size in self.crops()
        ]
        self._pid = os.getpid()

    def _outputs(self, pipelines: list[Any], array: Any) -> list[dict[str, Any]]:
        """Each pipeline's output for ``array``, its random state drawn from torch's RNG."""
        import numpy as np

        outputs = []
        seeds = torch.randint(0, 2**62, (len(pipelines),)).tolist()
        for pipeline, seed in zip(pipelines, seeds, strict=True):
            pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
            outputs.append(pipeline(image=array))
        return outputs

    def __call__(self, image: Any) -> dict[str, list[torch.Tensor]]:
        import numpy as np

        # A pipeline forked from another process would hold that process's state.
        if self._pid != os.getpid():
            self.build()
        views = []
        for output in self._outputs(self._pipelines, as_rgb(image)):
            view = output["image"]
            views.append(torch.from_numpy(np.ascontiguousarray(view.transpose(2, 0, 1))))
        return {"views": views}

    def boxes(self, height: int, width: int) -> list[Box]:
        """Each view's crop box in a ``height x width`` image, drawn as :meth:`__call__` draws it.

        ``(top, left, height, width)`` in pixels of the image; the same draws from torch's RNG
        as a call, through the same pipelines (copies that record what they apply).
        """
        import numpy as np

        if not self._recording:
            self._recording = [
                build_pipeline(options, recipe, size, seed=0, save_applied_params=True)
                for options, recipe, size in self.crops()
            ]
        boxes = []
        for output in self._outputs(self._recording, np.zeros((height, width, 3), np.uint8)):
            applied = dict(output["applied_transforms"])
            x_min, y_min, x_max, y_max = (
                int(v) for v in applied["RandomResizedCrop"]["crop_coords"]
            )
            boxes.append((y_min, x_min, y_max - y_min, x_max - x_min))
        return boxes


class TwoViews(PipelineViews):
    """Sample transform: the two BYOL views of one image, ``[uint8 [3,S,S]] * 2``."""

    def crops(self) -> list[tuple[AugmentOptions, ViewRecipe, int]]:
        return [(self.options, recipe, self.size) for recipe in self.options.views()]


class MultiCrops(PipelineViews):
    """Sample transform: 2 global views ``[uint8 [3,S,S]]`` then N local ``[uint8 [3,s,s]]``.

    ``options`` is a :class:`ssl_augment.multicrop.MultiCropOptions`.
    """

    def crops(self) -> list[tuple[AugmentOptions, ViewRecipe, int]]:
        return self.options.crops(self.size)


class AlbumentationsViews:
    """Run plugin of the ``albumentations`` view generator."""

    def __init__(self, options: AugmentOptions, size: int) -> None:
        self.size = size
        self.options = options
        # Built now: bad options fail here rather than in a worker, and albumentations is
        # imported once, so forked workers need not (each builds its own pipelines).
        self.transform = TwoViews(self.options, self.size)
        self.transform.build()

    @hookimpl
    def ssl_sample_transform(self) -> TwoViews:
        """Both views are made here, per image, in the DataLoader workers."""
        return self.transform

    @hookimpl
    def ssl_make_views(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """The collated ``uint8`` views as ``float32 [B,3,S,S]`` in ``[0,1]``."""
        return [v.float().div_(255.0) for v in batch["views"]]
