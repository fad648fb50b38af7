"""The index of a dataset's files (paths, label groups, what was skipped), cached between runs.

An index is keyed by what changes when files are added, removed or renamed: the
modification time of every folder that holds them (and, for a file list, the list's size and
modification time). A cached index whose key still matches is used as is: the files are not
listed again. Not noticed: a file overwritten in place under the same name (no folder
changes), and a change within the timestamp granularity of a folder's file system right
after it was read, which is why an index is not saved while a folder it depends on changed
less than :data:`SETTLE_S` seconds before the scan (see :meth:`Index.unsettled`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .paths import PathTable

#: Tag of the cache file format; an index written by another format is ignored.
FORMAT = "ssl_datasets.index/1"
#: A folder modified less than this many seconds before a scan may still change within the
#: same timestamp tick (1-2 s on some file systems), unseen: such an index is not saved.
SETTLE_S = 2.0
#: How many skipped entries of each kind an index remembers by name.
NAMED = 5


@dataclass
class Skips:
    """Entries of one kind left out of an index: how many, and the first few by name."""

    count: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)

    def add(self, name: str, reason: str) -> None:
        self.count += 1
        if len(self.examples) < NAMED:
            self.examples.append((name, reason))


@dataclass
class Index:
    """The files of a dataset in order, with their label groups and what keys the index.

    ``paths`` are relative to the dataset's base folder (or absolute); ``group[i]`` is the
    label group of path ``i`` (a first-level folder, a file list's label), ``-1`` for none.
    ``dirs`` (relative to the base, or absolute) and ``dir_mtimes`` (``st_mtime_ns``, ``-1``
    for a folder that did not exist) with ``files`` (``(path, size, mtime_ns)``) are the key.
    ``not_cached`` says why the index must not be saved (``None``: it may be).
    """

    paths: PathTable
    group: np.ndarray
    group_names: list[str]
    dirs: list[str]
    dir_mtimes: list[int]
    files: list[tuple[str, int, int]] = field(default_factory=list)
    skipped: dict[str, Skips] = field(default_factory=dict)
    numeric: bool = False
    not_cached: str | None = None

    def labels(self) -> tuple[np.ndarray | None, list[str] | None]:
        """``(labels, classes)``, or ``(None, None)`` when the data is unlabelled.

        Labelled when every path has a group and there are at least two groups: a single
        class would make a kNN score meaningless. Classes are the group names sorted (by
        value when they are integers), and labels index them.
        """
        if len(self.group) == 0:
            return None, None
        present = np.unique(self.group)
        if present[0] < 0 or len(present) < 2:
            return None, None
        names = [self.group_names[g] for g in present.tolist()]
        order = sorted(
            range(len(names)), key=(lambda k: int(names[k])) if self.numeric else names.__getitem__
        )
        lookup = np.full(len(self.group_names), -1, dtype=np.int64)
        lookup[present[order]] = np.arange(len(order))
        return lookup[self.group], [names[k] for k in order]

    def changed(self, base: str) -> str | None:
        """The first folder or file whose key no longer matches, or ``None``."""
        for rel, mtime in zip(self.dirs, self.dir_mtimes, strict=True):
            where = os.path.join(base, rel)
            try:
                now = os.stat(where).st_mtime_ns
            except OSError:
                now = -1
            if now != mtime:
                return where
        for path, size, mtime in self.files:
            try:
                stat = os.stat(path)
            except OSError:
                return path
            if (stat.st_size, stat.st_mtime_ns) != (size, mtime):
                return path
        return None

    def unsettled(self, base: str, started_ns: int) -> str | None:
        """A folder or file modified less than :data:`SETTLE_S` before ``started_ns``, or ``None``.

        Its next change may fall in the same timestamp tick and leave the key as it is.
        """
        limit = started_ns - int(SETTLE_S * 1e9)
        for rel, mtime in zip(self.dirs, self.dir_mtimes, strict=True):
            if mtime > limit:
                return os.path.join(base, rel) if rel else base
        for path, _, mtime in self.files:
            if mtime > limit:
                return path
        return None


def cache_folder(cache_dir: str | None, kind: str = "folder-index") -> Path:
    """Where indexes of ``kind`` are kept: ``cache_dir`` (``data.cache_dir``), else
    ``$SSL_CORE_CACHE/<kind>``, else ``$XDG_CACHE_HOME/ssl_core/<kind>``
    (``~/.cache/ssl_core/<kind>``)."""
    if cache_dir is not None and str(cache_dir).strip():
        return Path(cache_dir).expanduser().absolute()
    if os.environ.get("SSL_CORE_CACHE"):
        return Path(os.environ["SSL_CORE_CACHE"]).expanduser().absolute() / kind
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ssl_core" / kind


def _plain(value: Any) -> Any:
    """``value`` as it comes back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def cache_file(folder: Path, identity: dict[str, Any]) -> Path:
    """The index file of the dataset that ``identity`` names (kind, real paths)."""
    text = json.dumps(identity, sort_keys=True)  # ASCII: odd file names come out escaped
    return folder / f"{identity['kind']}-{hashlib.sha256(text.encode()).hexdigest()[:24]}.npz"


def load(path: Path, identity: dict[str, Any], base: str) -> Index | None:
    """The index cached at ``path`` for ``identity``, if there is one and its key matches.

    Anything wrong with the file (missing, damaged, of another format or dataset) means no
    cached index: the caller scans again and overwrites it.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes())
            if meta.get("format") != FORMAT or meta.get("identity") != _plain(identity):
                return None
            index = Index(
                paths=PathTable(
                    base, archive["blob"].tobytes(), archive["starts"], archive["ends"]
                ),
                group=archive["group"],
                group_names=meta["group_names"],
                dirs=meta["dirs"],
                dir_mtimes=archive["dir_mtimes"].tolist(),
                files=[tuple(f) for f in meta["files"]],
                skipped={
                    k: Skips(n, [tuple(e) for e in ex]) for k, (n, ex) in meta["skipped"].items()
                },
                numeric=meta["numeric"],
            )
    except Exception:
        return None
    return None if index.changed(base) else index


def save(path: Path, index: Index, identity: dict[str, Any]) -> None:
    """Write ``index`` to ``path`` atomically: a reader sees the old file or the new one.

    :raises OSError: when the cache folder cannot be written.
    """
    from ssl_core import write_atomic

    meta = {
        "format": FORMAT,
        "identity": identity,
        "group_names": index.group_names,
        "dirs": index.dirs,
        "files": index.files,
        "skipped": {k: (s.count, s.examples) for k, s in index.skipped.items()},
        "numeric": index.numeric,
    }
    arrays = {
        "blob": np.frombuffer(index.paths.blob, dtype=np.uint8),
        "starts": index.paths.starts,
        "ends": index.paths.ends,
        "group": np.asarray(index.group, dtype=np.int32),
        "dir_mtimes": np.asarray(index.dir_mtimes, dtype=np.int64),
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
    }

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would add ".npz" to a name
            np.savez(handle, **arrays)

    write_atomic(path, write)
