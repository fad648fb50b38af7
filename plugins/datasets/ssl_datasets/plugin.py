"""Entry point of the built-in datasets: registers ``digits``, ``folder`` and ``synthetic``.

Imported whenever plugins are listed, so it imports nothing heavy: each factory loads its
dataset's module when a run selects it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ssl_core import hookimpl, option

if TYPE_CHECKING:
    from omegaconf import DictConfig


def _val_fraction(default: float) -> Any:
    return option(
        default,
        "share of each class held out as the kNN query set (strictly between 0 and 1)",
        min=0.0,
        max=1.0,
    )


@dataclass
class DigitsOptions:
    val_fraction: float = _val_fraction(0.2)


@dataclass
class FolderOptions:
    path: str | None = option(None, "folder of images; class subfolders make it labelled")
    val_fraction: float = _val_fraction(0.2)
    strict: bool = option(
        False, "stop on a corrupt or unreadable image instead of skipping it with a warning"
    )


@dataclass
class SyntheticOptions:
    num_samples: int = option(256, "number of images (train and val together)", min=2)
    num_classes: int = option(4, "number of classes, told apart by mean colour", min=1)
    val_fraction: float = _val_fraction(0.25)


def _digits(options: DigitsOptions, config: DictConfig) -> Any:
    from .digits import DigitsDataset

    return DigitsDataset(options.val_fraction, config)


def _folder(options: FolderOptions, config: DictConfig) -> Any:
    from .folder import FolderDataset

    return FolderDataset(options.path, options.val_fraction, options.strict, config=config)


def _synthetic(options: SyntheticOptions, config: DictConfig) -> Any:
    from .synthetic import SyntheticDataset

    return SyntheticDataset(
        options.num_samples, options.num_classes, options.val_fraction, config=config
    )


@hookimpl
def ssl_register_datasets(register: Callable[..., None]) -> None:
    register(
        "digits",
        _digits,
        options=DigitsOptions,
        default=True,
        description="scikit-learn's 8x8 handwritten digits (1797 images, 10 classes, offline)",
    )
    register(
        "folder",
        _folder,
        options=FolderOptions,
        description="image files under data.path; class subfolders give labels",
    )
    register(
        "synthetic",
        _synthetic,
        options=SyntheticOptions,
        description="seeded random images, classes told apart by colour (tests, smoke runs)",
    )
