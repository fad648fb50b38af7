"""A compact table of file paths: one ``bytes`` blob and two offset arrays, whatever the count."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np


class PathTable(Sequence):
    """The paths ``root/relative[i]``, kept as the encoded relative paths in one ``bytes``.

    A list of a million ``str`` takes ~100 MB, and a forked DataLoader worker that reads it
    copies the pages it touches (every access writes a reference count); this is five objects
    for any number of paths, quick to pickle, and a subset shares the blob. Paths are encoded
    as the file system names them (``os.fsencode``), so names that are not valid UTF-8 survive.
    """

    def __init__(self, root: str, blob: bytes, starts: np.ndarray, ends: np.ndarray) -> None:
        self.root = str(root)
        self.blob = bytes(blob)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.ends = np.asarray(ends, dtype=np.int64)

    @classmethod
    def from_relative(cls, root: str, relative: Sequence[str]) -> PathTable:
        """A table of ``relative`` paths (or absolute ones: ``os.path.join`` keeps those)."""
        if not relative:
            empty = np.zeros(0, dtype=np.int64)
            return cls(root, b"", empty, empty)
        # NUL is the one byte a POSIX path cannot hold: it separates them.
        blob = os.fsencode("\0".join(relative))
        ends = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == 0)
        ends = np.append(ends, len(blob)).astype(np.int64)
        starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
        return cls(root, blob, starts, ends)

    def __len__(self) -> int:
        return len(self.starts)

    def relative(self, index: int) -> str:
        """The ``index``-th path as stored: relative to :attr:`root` (or absolute)."""
        return os.fsdecode(self.blob[self.starts[index] : self.ends[index]])

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        relative = self.relative(index)
        return os.path.join(self.root, relative) if self.root else relative

    def subset(self, index: np.ndarray) -> PathTable:
        """The paths at ``index`` (an integer array), sharing this table's blob."""
        return PathTable(self.root, self.blob, self.starts[index], self.ends[index])
