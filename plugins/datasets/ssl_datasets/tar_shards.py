"""Entry point of ``data=webdataset``: images in local tar shards (webdataset's layout).

Imported whenever plugins are listed, so it imports nothing heavy; webdataset (an optional
dependency, ``pip install 'ssl-core[webdataset]'``) is imported when a run selects the
dataset. The dataset itself is in :mod:`ssl_datasets.tar_samples`, the shard index in
:mod:`ssl_datasets.tar_index`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ssl_core import hookimpl, option

if TYPE_CHECKING:
    from omegaconf import DictConfig


@dataclass
class WebDatasetOptions:
    urls: str | None = option(
        None,
        "local tar shards, brace notation: /data/train-{000000..000099}.tar ('::' joins "
        "patterns); the image is the member with an image extension, the label its .cls",
    )
    val_urls: str | None = option(
        None,
        "labelled shards held out as the kNN query set (default: a stratified "
        "data.val_fraction of data.urls)",
    )
    val_fraction: float = option(
        0.05,
        "share of each class held out as the kNN query set when data.val_urls is not given "
        "(strictly between 0 and 1)",
        min=0.0,
        max=1.0,
    )
    strict: bool = option(
        False, "stop on an undecodable image or a damaged shard instead of skipping it"
    )
    cache_dir: str | None = option(
        None,
        "folder for the cached index of the shards (null: $SSL_CORE_CACHE/tar-index, else "
        "~/.cache/ssl_core/tar-index)",
    )


def make(options: WebDatasetOptions, config: DictConfig) -> Any:
    from .extras import require

    require("webdataset", dataset="webdataset", package="webdataset", extra="webdataset")
    from .tar_samples import TarShardsDataset

    return TarShardsDataset(
        urls=options.urls,
        val_urls=options.val_urls,
        val_fraction=options.val_fraction,
        strict=options.strict,
        cache_dir=options.cache_dir,
        seed=int(config.trainer.seed),
    )


@hookimpl
def ssl_register_datasets(register: Callable[..., None]) -> None:
    register(
        "webdataset",
        make,
        options=WebDatasetOptions,
        description="images in local webdataset tar shards, read by position (cached index)",
    )
