"""``data=digits``: scikit-learn's 8×8 handwritten digits, upsampled to ``data.image_size``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ssl_core import hookimpl

from .split import stratified_split

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ssl_core import ImageData

_DIGITS_CLASSES = 10
_DIGITS_MAX_VALUE = 16.0
_DIGITS_CHUNK = 256


class ArrayImages(Sequence):
    """``(image, label)`` items over in-memory grayscale images, given as RGB on access.

    ``images`` is ``uint8 [N,S,S]``; ``indices`` selects this split's rows. Storing one channel
    keeps memory at a third; the copy into ``HxWx3`` happens per item, in the worker.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
        self.images = images
        self.labels = labels
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        row = self.indices[index]
        return np.repeat(self.images[row][..., None], 3, axis=2), int(self.labels[row])


class DigitsDataset:
    """Run plugin of ``data=digits``: scikit-learn's 8×8 digits upsampled to ``S×S``."""

    def __init__(self, val_fraction: float, config: DictConfig) -> None:
        self.val_fraction = val_fraction
        self.config = config

    @hookimpl
    def ssl_build_dataset(self) -> ImageData:
        config = self.config
        from ssl_core import ImageData

        images, labels = load_digits(int(config.data.image_size))
        train_idx, val_idx = stratified_split(labels, self.val_fraction, config.trainer.seed)
        return ImageData(
            train=ArrayImages(images, labels, train_idx),
            val=ArrayImages(images, labels, val_idx),
            classes=[str(c) for c in range(_DIGITS_CLASSES)],
        )


def load_digits(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as ``uint8 [N,S,S]`` on a 0–255 scale, and their ``int64 [N]`` labels.

    Upsampled bilinearly, in chunks so the float intermediate stays small for large ``S``.
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    source = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / _DIGITS_MAX_VALUE))
    out = np.empty((len(source), image_size, image_size), dtype=np.uint8)
    for start in range(0, len(source), _DIGITS_CHUNK):
        chunk = source[start : start + _DIGITS_CHUNK, None]
        if image_size != chunk.shape[-1]:
            chunk = F.interpolate(
                chunk, size=(image_size, image_size), mode="bilinear", align_corners=False
            )
        out[start : start + len(chunk)] = chunk[:, 0].clamp(0, 255).round().to(torch.uint8)
    return out, bunch.target.astype(np.int64)
