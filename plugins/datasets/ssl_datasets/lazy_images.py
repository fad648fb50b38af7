"""Items decoded when they are accessed, and what happens when one cannot be decoded."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from .images import UnreadableImage, reason

#: Unreadable images named one by one in a process's warnings; after them only the 10th,
#: 100th, 1000th... so that a broken dataset cannot flood the log.
NAMED_WARNINGS = 5


class LazyImages(Sequence):
    """``(image, label)`` items decoded on access; an image that fails is skipped or stops.

    Subclasses say how item ``i`` is read (:meth:`_load`), labelled (:meth:`_label`) and named
    in messages (:meth:`_name`). The policy is the ``folder`` dataset's: an image that fails
    to decode raises :class:`UnreadableImage` when ``strict``; otherwise the next readable item
    (by index, wrapping around) stands in for it, so the substitute depends only on which
    items are bad, and a warning names it (once per process).
    """

    strict: bool = False
    #: index -> reason, for the items this process found unreadable (set by ``__init__``)
    unreadable: dict[int, str]

    def _load(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def _label(self, index: int) -> int:
        raise NotImplementedError

    def _name(self, index: int) -> str:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:  # type: ignore[override]
        count = len(self)
        if not -count <= index < count:
            raise IndexError(f"index {index} out of range for {count} images")
        unreadable = self.unreadable
        for offset in range(count):
            i = (index + offset) % count
            if i in unreadable:
                continue
            try:
                return self._load(i), self._label(i)
            except Exception as exc:
                why = reason(exc)
                if self.strict:
                    raise UnreadableImage(
                        f"cannot read image {self._name(i)}: {why}; fix or remove it, "
                        "or set data.strict=false to skip unreadable images"
                    ) from exc
                unreadable[i] = why
                self._warn(i, why, len(unreadable))
        raise UnreadableImage(
            f"none of the {count} images could be read, e.g. {self._name(0)}: "
            f"{unreadable.get(0, 'unreadable')}"
        )

    def _warn(self, index: int, why: str, n: int) -> None:
        if n > NAMED_WARNINGS and str(n).rstrip("0") != "1":  # 6..9, 11..99, ...: quiet
            return
        so_far = "1 unreadable image" if n == 1 else f"{n} unreadable images"
        print(
            f"warning: cannot read image {self._name(index)} ({why}); the next readable image "
            f"is used in its place ({so_far} so far in this process)",
            file=sys.stderr,
        )
