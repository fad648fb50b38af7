"""``data=webdataset``: images in local tar shards, read by position through a cached index.

The shards are a map-style dataset: every sample has a global position (shards in the order
of ``data.urls``, samples in member order), so the engine's sampler splits each global batch
over processes and workers by position, knows the number of samples of an epoch exactly, and
resumes in the middle of an epoch exactly, as for any other dataset. An item is one
``os.pread`` of its image member (no shared file offset, so safe after ``fork``), decoded
with PIL like the ``folder`` dataset's files.
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from ssl_core import UserError, hookimpl

from .images import pil_to_rgb
from .lazy_images import LazyImages
from .split import stratified_split
from .tar_index import IMAGE_EXTENSIONS, ShardIndex, cache_folder, index_shards

if TYPE_CHECKING:
    from ssl_core import ImageData

#: Shard files a process keeps open at once; the least recently read is closed beyond this.
MAX_OPEN_SHARDS = 64


class ShardSet:
    """The samples of a list of shards, end to end: where each one's image lies, its label.

    Holds numpy arrays and paths (about 40 bytes a sample), and per process a few open file
    descriptors, which are never pickled: a DataLoader worker opens its own.
    """

    def __init__(self, paths: list[str], indexes: list[ShardIndex]) -> None:
        self.paths = paths
        counts = [len(index) for index in indexes]
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.offsets = np.concatenate([i.offsets for i in indexes]).astype(np.int64)
        self.sizes = np.concatenate([i.sizes for i in indexes]).astype(np.int64)
        self.exts = np.concatenate([i.exts for i in indexes]).astype(np.uint8)
        self.labels = np.concatenate([i.labels for i in indexes]).astype(np.int64)
        self.key_bytes = np.concatenate([i.keys for i in indexes]).astype(np.uint8)
        key_ends, base = [], 0
        for index in indexes:
            key_ends.append(index.key_ends + base)
            base += len(index.keys)
        self.key_ends = np.concatenate([[0], *key_ends]).astype(np.int64)
        self._open: OrderedDict[int, int] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.offsets)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"], state["_pid"] = OrderedDict(), None
        return state

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for fd in self._open.values():
                try:
                    os.close(fd)
                except OSError:
                    pass

    def shard_of(self, sample: int) -> int:
        return int(np.searchsorted(self.starts, sample, side="right")) - 1

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():
            # a forked child shares the parent's descriptors; it opens its own and leaves
            # the parent's alone
            self._open, self._pid = OrderedDict(), os.getpid()
        fd = self._open.get(shard)
        if fd is not None:
            self._open.move_to_end(shard)
            return fd
        if len(self._open) >= MAX_OPEN_SHARDS:
            os.close(self._open.popitem(last=False)[1])
        fd = self._open[shard] = os.open(self.paths[shard], os.O_RDONLY)
        return fd

    def image_bytes(self, sample: int) -> bytes:
        size = int(self.sizes[sample])
        data = os.pread(self._fd(self.shard_of(sample)), size, int(self.offsets[sample]))
        if len(data) != size:
            raise OSError(
                f"read {len(data)} of {size} bytes: the shard changed since it was indexed"
            )
        return data

    def key(self, sample: int) -> str:
        """``<shard file name>/<sample key>``, e.g. ``train-000003.tar/sample000012``."""
        raw = self.key_bytes[self.key_ends[sample] : self.key_ends[sample + 1]].tobytes()
        shard = os.path.basename(self.paths[self.shard_of(sample)])
        return f"{shard}/{raw.decode('utf-8', 'surrogateescape')}"

    def member(self, sample: int) -> str:
        """The image member, for messages: ``/data/train-000003.tar:sample000012.jpg``."""
        key = self.key(sample).split("/", 1)[1]
        ext = IMAGE_EXTENSIONS[int(self.exts[sample])]
        return f"{self.paths[self.shard_of(sample)]}:{key}.{ext}"


class TarSamples(LazyImages):
    """``(image, label)`` items: the samples ``rows`` of a :class:`ShardSet`, decoded on access.

    Picklable into DataLoader workers (paths and arrays, no file descriptors).
    ``key(i)`` is the sample's ``<shard file name>/<key>``.
    """

    def __init__(self, shards: ShardSet, rows: np.ndarray | None = None, strict: bool = False):
        self.shards = shards
        self.rows = np.arange(len(shards), dtype=np.int64) if rows is None else np.asarray(rows)
        self.strict = bool(strict)
        self.unreadable: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def key(self, index: int) -> str:
        return self.shards.key(int(self.rows[index]))

    def _label(self, index: int) -> int:
        return int(self.shards.labels[self.rows[index]])

    def _name(self, index: int) -> str:
        return self.shards.member(int(self.rows[index]))

    def _load(self, index: int) -> np.ndarray:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(self.shards.image_bytes(int(self.rows[index])))) as image:
            return pil_to_rgb(image)


def expand_shards(urls: str, key: str) -> list[str]:
    """The local shard files of a webdataset URL pattern, each checked to exist.

    Brace notation and ``::`` lists are expanded by webdataset's ``expand_urls``;
    ``file:`` prefixes and ``~`` are allowed. Paths are made absolute.

    :raises UserError: for a remote URL, a missing or repeated shard, or no shard at all.
    """
    from webdataset.shardlists import expand_urls

    paths = []
    for url in expand_urls(str(urls).strip()):
        url = url.strip()
        if url.startswith("file:"):
            url = url[len("file:") :]
        if "://" in url or url.startswith("pipe:"):
            raise UserError(
                f"{key}={urls}: {url} is not a local file; data=webdataset reads local "
                "tar shards only (copy them to local or network-mounted storage)"
            )
        paths.append(os.path.abspath(os.path.expanduser(url)))
    if not paths:
        raise UserError(f"{key}={urls} names no shard")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UserError(
            f"{key}={urls}: {len(missing)} of {len(paths)} shards do not exist, "
            f"e.g. {missing[0]}{more}"
        )
    real = [os.path.realpath(p) for p in paths]
    if len(set(real)) != len(real):
        twice = next(p for p, r in zip(paths, real, strict=True) if real.count(r) > 1)
        raise UserError(f"{key}={urls} names the shard {twice} more than once")
    return paths


class TarShardsDataset:
    """Run plugin of ``data=webdataset``: images (and ``.cls`` labels) in local tar shards.

    Labelled when every sample has a ``.cls`` member, unlabelled when none has. The kNN
    held-out split is ``data.val_urls`` when given (labelled shards, all of them), otherwise
    a stratified ``data.val_fraction`` of ``data.urls`` as for the other datasets.
    """

    def __init__(
        self,
        urls: str | None,
        val_urls: str | None = None,
        val_fraction: float = 0.1,
        strict: bool = False,
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        self.seed = seed  # trainer.seed: it draws the held-out split
        self.urls, self.val_urls = urls, val_urls
        self.val_fraction = val_fraction
        self.strict = bool(strict)
        self.cache_dir = cache_dir

    def shard_set(self, urls: str, key: str) -> ShardSet:
        """Every sample of the shards ``urls`` (``key`` names the option in messages)."""
        paths = expand_shards(urls, key)
        indexes = index_shards(paths, cache_folder(self.cache_dir))
        for path, index in zip(paths, indexes, strict=True):
            if index.damage:
                message = f"{path} is damaged: {index.damage}"
                if self.strict:
                    raise UserError(
                        f"{message} (data.strict=true); repair or remove it, or set "
                        "data.strict=false to use the samples before the damage"
                    )
                print(
                    f"warning: {message}; its first {len(index)} samples are used",
                    file=sys.stderr,
                )
        without = [(p, i) for p, i in zip(paths, indexes, strict=True) if i.no_image]
        if without:
            count = sum(i.no_image for _, i in without)
            path, index = without[0]
            exts = ", ".join(IMAGE_EXTENSIONS)
            print(
                f"warning: skipped {count} sample{'s' if count != 1 else ''} without an image "
                f"member ({exts}), e.g. {path}:{index.no_image_key}",
                file=sys.stderr,
            )
        shards = ShardSet(paths, indexes)
        if len(shards) == 0:
            raise UserError(
                f"{key}={urls}: no samples with an image member "
                f"({', '.join(IMAGE_EXTENSIONS)}) in {len(paths)} shards"
            )
        labelled = shards.labels >= 0
        if labelled.any() and not labelled.all():
            first = int(np.flatnonzero(~labelled)[0])
            raise UserError(
                f"{key}={urls}: {int((~labelled).sum())} of {len(shards)} samples have no "
                f".cls label, e.g. {shards.member(first)}; label every sample or none"
            )
        return shards

    @hookimpl
    def ssl_build_dataset(self) -> ImageData:
        from ssl_core import ImageData

        if self.urls is None or not str(self.urls).strip():
            raise UserError(
                "data.urls is required for data=webdataset "
                "(e.g. data.urls=/data/shards/train-{000000..000099}.tar)"
            )
        shards = self.shard_set(str(self.urls), "data.urls")
        labelled = bool((shards.labels >= 0).all())
        if self.val_urls is not None and str(self.val_urls).strip():
            val = self.shard_set(str(self.val_urls), "data.val_urls")
            if not labelled or not (val.labels >= 0).all():
                which = "data.urls" if not labelled else "data.val_urls"
                raise UserError(
                    f"data.val_urls is the labelled kNN query set, but the samples of {which} "
                    "have no .cls labels; label both, or leave data.val_urls out"
                )
            shared = set(map(os.path.realpath, shards.paths)) & set(
                map(os.path.realpath, val.paths)
            )
            if shared:
                raise UserError(
                    f"data.val_urls and data.urls share the shard {sorted(shared)[0]}; "
                    "the held-out shards must be others"
                )
            top = int(max(shards.labels.max(), val.labels.max()))
            return ImageData(
                train=TarSamples(shards, strict=self.strict),
                val=TarSamples(val, strict=self.strict),
                classes=[str(c) for c in range(top + 1)],
            )
        if not labelled:
            return ImageData(train=TarSamples(shards, strict=self.strict))
        train_idx, val_idx = stratified_split(shards.labels, self.val_fraction, self.seed)
        return ImageData(
            train=TarSamples(shards, train_idx, self.strict),
            val=TarSamples(shards, val_idx, self.strict),
            classes=[str(c) for c in range(int(shards.labels.max()) + 1)],
        )
