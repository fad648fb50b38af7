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
        False,
        "stop on a corrupt or unreadable image (when it is loaded), an unreadable subfolder or "
        "a file_list line naming no file, instead of skipping it with a warning",
    )
    file_list: str | None = option(
        None,
        "CSV naming the images, one per line: path or path,label (class name or int); paths "
        "relative to data.path when given, else to the list's folder",
    )
    cache_dir: str | None = option(
        None,
        "folder for the cached list of files (null: $SSL_CORE_CACHE/folder-index, else "
        "$XDG_CACHE_HOME or ~/.cache, then ssl_core/folder-index)",
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

    return FolderDataset(
        options.path,
        options.val_fraction,
        options.strict,
        options.file_list,
        options.cache_dir,
        config=config,
    )


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
        description="image files under data.path or named in data.file_list; class subfolders or a label column give labels",
    )
    register(
        "synthetic",
        _synthetic,
        options=SyntheticOptions,
        description="seeded random images, classes told apart by colour (tests, smoke runs)",
    )
