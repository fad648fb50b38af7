"""``data=synthetic``: seeded random images whose classes differ by mean colour."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ssl_core import hookimpl

from .split import (
    SYNTHETIC_COLOUR_STREAM,
    SYNTHETIC_PIXEL_STREAM,
    seeded_rng,
    stratified_split,
)

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ssl_core import ImageData


class SyntheticImages(Sequence):
    """``(image, label)`` items drawn on access: class colour plus Gaussian pixel noise.

    Item ``i`` always comes from the same random stream (``seed``, ``ids[i]``), so nothing is
    stored but ids and labels, and workers reproduce the same images.
    """

    #: Pixel noise around the class colour, in 8-bit levels.
    NOISE_STD = 32.0

    def __init__(
        self,
        ids: np.ndarray,
        labels: np.ndarray,
        colours: np.ndarray,
        image_size: int,
        seed: int,
    ) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.colours = colours
        self.image_size = int(image_size)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        sample_id = int(self.ids[index])
        label = int(self.labels[index])
        rng = seeded_rng(self.seed, SYNTHETIC_PIXEL_STREAM, sample_id)
        shape = (self.image_size, self.image_size, 3)
        noise = rng.standard_normal(shape, dtype=np.float32) * self.NOISE_STD
        image = np.clip(self.colours[label] + noise, 0.0, 255.0)
        return np.rint(image).astype(np.uint8), label


class SyntheticDataset:
    """Run plugin of ``data=synthetic``: seeded random images, classes told apart by colour.

    Class ``c`` has a mean colour of hue ``c / num_classes`` (plus a seeded offset) and each
    image adds Gaussian noise, so a kNN on even a random encoder's features beats chance.
    Labels cycle ``0, 1, ..., num_classes-1`` over the samples, so classes are balanced.
    """

    def __init__(
        self, num_samples: int, num_classes: int, val_fraction: float, *, config: DictConfig
    ) -> None:
        self.config = config
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.val_fraction = val_fraction

    @hookimpl
    def ssl_build_dataset(self) -> ImageData:
        config = self.config
        from ssl_core import ImageData

        seed = int(config.trainer.seed)
        colours = synthetic_colours(self.num_classes, seed)
        ids = np.arange(self.num_samples, dtype=np.int64)
        labels = ids % self.num_classes
        train_idx, val_idx = stratified_split(labels, self.val_fraction, seed)
        size = int(config.data.image_size)

        def split(idx: np.ndarray) -> SyntheticImages:
            return SyntheticImages(ids[idx], labels[idx], colours, size, seed)

        return ImageData(
            train=split(train_idx),
            val=split(val_idx),
            classes=[f"class_{c}" for c in range(self.num_classes)],
        )


def synthetic_colours(num_classes: int, seed: int) -> np.ndarray:
    """``float32 [C, 3]`` class colours on the 0–255 scale: evenly spaced hues, seeded offset."""
    rng = seeded_rng(seed, SYNTHETIC_COLOUR_STREAM)
    offset = rng.random()
    colours = []
    for c in range(num_classes):
        # alternate brightness so that neighbouring hues of many classes still differ
        value = 0.85 if c % 2 == 0 else 0.55
        colours.append(colorsys.hsv_to_rgb((offset + c / num_classes) % 1.0, 0.7, value))
    return np.asarray(colours, dtype=np.float32) * 255.0
