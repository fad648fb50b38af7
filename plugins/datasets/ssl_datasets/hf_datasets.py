"""Entry point of ``data=hf``: a Hugging Face ``datasets`` dataset on local disk.

Imported whenever plugins are listed, so it imports nothing heavy; ``datasets`` (an optional
dependency, ``pip install 'ssl-core[hf]'``) is imported when a run selects the dataset. The
dataset itself is in :mod:`ssl_datasets.hf_images`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ssl_core import hookimpl, option

if TYPE_CHECKING:
    from omegaconf import DictConfig


@dataclass
class HFOptions:
    path: str | None = option(
        None,
        "a save_to_disk/load_from_disk folder, or .arrow or .parquet files (a file, a folder "
        "of them or a glob); local only",
    )
    split: str | None = option(
        None, "split to train on when data.path holds a DatasetDict (default: train)"
    )
    val_split: str | None = option(
        None,
        "split of the DatasetDict held out as the kNN query set (default: a stratified "
        "data.val_fraction of data.split)",
    )
    image_column: str = option("image", "column of the images (an Image feature or bytes)")
    label_column: str | None = option(
        "label", "column of the class labels; absent or null: unlabelled (no kNN)"
    )
    val_fraction: float = option(
        0.05,
        "share of each class held out as the kNN query set when data.val_split is not given "
        "(strictly between 0 and 1)",
        min=0.0,
        max=1.0,
    )
    strict: bool = option(False, "stop on an undecodable image instead of skipping it")
    cache_dir: str | None = option(
        None,
        "where parquet files are converted to Arrow once, a copy as large as the data "
        "(default: $HF_DATASETS_CACHE, i.e. ~/.cache/huggingface/datasets)",
    )


def make(options: HFOptions, config: DictConfig) -> Any:
    import os

    from .extras import require

    # read by datasets when it is imported: local data needs no network, and must not wait
    # for one
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    require("datasets", dataset="hf", package="datasets", extra="hf")
    from .hf_images import HFDataset

    return HFDataset(
        path=options.path,
        split=options.split,
        val_split=options.val_split,
        image_column=options.image_column,
        label_column=options.label_column,
        val_fraction=options.val_fraction,
        strict=options.strict,
        cache_dir=options.cache_dir,
        seed=int(config.trainer.seed),
    )


@hookimpl
def ssl_register_datasets(register: Callable[..., None]) -> None:
    register(
        "hf",
        make,
        options=HFOptions,
        description="a Hugging Face datasets dataset on disk (save_to_disk, arrow, parquet)",
    )
