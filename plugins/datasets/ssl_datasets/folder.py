"""``data=folder``: the image files under ``data.path`` or named in ``data.file_list``.

Files are listed, not opened, when the dataset is built (:mod:`ssl_datasets.scan`,
:mod:`ssl_datasets.file_list`), and the list is cached (:mod:`ssl_datasets.index`); each file
is decoded when it is loaded, and one that fails is skipped or, with ``data.strict=true``,
stops the run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ssl_core import UserError, hookimpl

from .file_list import read_file_list
from .images import pil_to_rgb, reason
from .index import SETTLE_S, Index, Skips, cache_file, cache_folder, load, save
from .lazy_images import LazyImages
from .paths import PathTable
from .progress import ScanProgress
from .scan import IMAGE_EXTENSIONS, SKIP_KINDS, scan_folder
from .split import stratified_split

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ssl_core import ImageData

__all__ = ["IMAGE_EXTENSIONS", "FolderDataset", "FolderImages"]

#: How many unreadable files a warning or an error names before it says "and N more".
_NAMED_FILES = 5


class FolderImages(LazyImages):
    """``(image, label)`` items over image files, each opened with PIL when it is accessed.

    Holds a :class:`PathTable` and a label array, so it is small to pickle into DataLoader
    workers whatever the number of files. A file that fails to decode is skipped or stops the
    run as :class:`LazyImages` says.
    """

    def __init__(
        self, paths: PathTable | Sequence[str], labels: Sequence[int], strict: bool = False
    ) -> None:
        self.table = paths if isinstance(paths, PathTable) else PathTable.from_relative("", paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.labels) != len(self.table):
            raise ValueError(f"{len(self.table)} paths but {len(self.labels)} labels")
        self.strict = bool(strict)
        # index -> reason, for the files this process found unreadable
        self.unreadable: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.table)

    @property
    def paths(self) -> list[str]:
        """Every file's path (a list of all of them: for small sets and tests)."""
        return [self.table[i] for i in range(len(self.table))]

    def key(self, index: int) -> str:
        """The path of item ``index``: what ``ssl embed`` writes beside its embedding."""
        return self.table[index]

    def _label(self, index: int) -> int:
        return int(self.labels[index])

    def _name(self, index: int) -> str:
        return self.table[index]

    def _load(self, index: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.table[index]) as image:
            return pil_to_rgb(image)


def _name_some(names: Sequence[str], total: int) -> str:
    shown = ", ".join(names[:_NAMED_FILES])
    more = total - min(len(names), _NAMED_FILES)
    return f"{shown} and {more} more" if more > 0 else shown


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one}" if n == 1 else f"{n} {many}"


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


class FolderDataset:
    """Run plugin of ``data=folder``: the image files under ``data.path``, or in a file list.

    Scanning a folder: when every image sits in a first-level subfolder and there are at
    least two such subfolders, the subfolder names (sorted) are the classes and a stratified
    val split is held out; otherwise every image is an unlabelled training image (label
    ``-1``, no val). A single subfolder is not taken as one class: a one-class kNN score says
    nothing. A file list (``data.file_list``) is labelled the same way by its label column.
    The index of the files is cached in ``data.cache_dir`` (see :mod:`ssl_datasets.index`).
    """

    def __init__(
        self,
        path: str | None,
        val_fraction: float,
        strict: bool = False,
        file_list: str | None = None,
        cache_dir: str | None = None,
        *,
        config: DictConfig,
    ) -> None:
        self.config = config
        self.path = path
        self.val_fraction = val_fraction
        self.strict = bool(strict)
        self.file_list = file_list if file_list and str(file_list).strip() else None
        self.cache_dir = cache_dir

    def _root(self) -> Path:
        if self.path is None or not str(self.path).strip():
            raise UserError(
                "data.path is required for data=folder (e.g. data.path=./images), "
                "unless data.file_list names the images"
            )
        root = Path(self.path).expanduser()
        if not root.exists():
            raise UserError(f"data.path={self.path} does not exist; give a folder of images")
        if not root.is_dir():
            raise UserError(f"data.path={self.path} is not a directory; give a folder of images")
        return root

    @hookimpl
    def ssl_build_dataset(self) -> ImageData:
        config = self.config
        from ssl_core import ImageData

        index = self._list_index() if self.file_list else self._folder_index()
        labels, classes = index.labels()
        if labels is None:
            unlabelled = np.full(len(index.paths), -1, dtype=np.int64)
            return ImageData(train=FolderImages(index.paths, unlabelled, self.strict))
        train_idx, val_idx = stratified_split(labels, self.val_fraction, config.trainer.seed)

        def split(idx: np.ndarray) -> FolderImages:
            return FolderImages(index.paths.subset(idx), labels[idx], self.strict)

        return ImageData(train=split(train_idx), val=split(val_idx), classes=classes)

    # --- the index: cached, or built and saved -----------------------------------------------

    def _indexed(
        self,
        identity: dict[str, Any],
        base: str,
        what: str,
        build: Callable[[ScanProgress], Index],
        noun: str,
    ) -> Index:
        """The cached index of ``identity`` when its key matches, else ``build``'s, saved."""
        path = cache_file(cache_folder(self.cache_dir), identity)
        index = load(path, identity, base)
        if index is not None:
            return index
        started = time.time_ns()
        with ScanProgress(what, noun) as progress:
            index = build(progress)
            note = self._save(path, index, identity, base, started)
            progress.done(len(index.paths), len(index.dirs), note)
        return index

    def _save(
        self, path: Path, index: Index, identity: dict[str, Any], base: str, started: int
    ) -> str:
        """Save ``index`` when it may be reused; a note for the scan's closing line."""
        why_not = index.not_cached
        if why_not is None and (recent := index.unsettled(base, started)) is not None:
            why_not = f"{recent} changed less than {SETTLE_S:g} s before the scan"
        if why_not is not None:
            return f"; not cached: {why_not}"
        try:
            save(path, index, identity)
        except OSError as error:
            print(
                f"warning: cannot save the index of {base} in {path.parent} "
                f"({error.strerror or reason(error)}); the next run lists the files again "
                "(set data.cache_dir to a writable folder)",
                file=sys.stderr,
            )
            return ""
        return f"; index saved in {path}"

    def _folder_index(self) -> Index:
        root = str(self._root())
        identity = {
            "kind": "folder",
            "root": os.path.realpath(root),
            "extensions": list(IMAGE_EXTENSIONS),
        }
        index = self._indexed(
            identity, root, f"scanning {root}", lambda p: scan_folder(root, p), "image file"
        )
        self._report_folder(index, root)
        return index

    def _report_folder(self, index: Index, root: str) -> None:
        """One warning naming what the scan skipped, or a one-line error.

        :raises UserError: when no image was found, or (``strict``) a subfolder is unreadable.
        """
        kinds = [(kind, skips) for kind, skips in index.skipped.items()]
        fatal = [(kind, skips) for kind, skips in kinds if SKIP_KINDS[kind][2]]
        if self.strict and fatal:
            detailed = [f"{name} ({why})" for _, skips in fatal for name, why in skips.examples]
            raise UserError(
                f"{_what(fatal)} under data.path={self.path} (data.strict=true): "
                f"{_name_some(detailed, sum(s.count for _, s in fatal))}; "
                "fix or remove them, or set data.strict=false to skip them"
            )
        names = [name for _, skips in kinds for name, _ in skips.examples]
        total = sum(skips.count for _, skips in kinds)
        if not len(index.paths):
            valid = ", ".join(IMAGE_EXTENSIONS)
            skipped = f"; skipped {_what(kinds)} ({_name_some(names, total)})" if kinds else ""
            raise UserError(
                f"no images found under data.path={self.path}; valid extensions: {valid} "
                f"(any case){skipped}"
            )
        if kinds:
            hint = ""
            if "outside_link" in index.skipped:
                hint = (
                    "; to use files that links lead to, give their folder as data.path "
                    "or name the files in a data.file_list"
                )
            print(
                f"warning: skipped {_what(kinds)} under {root}: {_name_some(names, total)}{hint}",
                file=sys.stderr,
            )

    def _list_index(self) -> Index:
        shown = str(self.file_list)
        list_path = Path(shown).expanduser()
        if not list_path.exists():
            raise UserError(
                f"data.file_list={shown} does not exist; give a CSV file naming one image "
                "per line (path, or path,label)"
            )
        if list_path.is_dir():
            raise UserError(
                f"data.file_list={shown} is a folder; give a CSV file naming one image per line "
                "(path, or path,label)"
            )
        base = str(self._root()) if self.path is not None and str(self.path).strip() else None
        base = base or str(list_path.parent)
        identity = {
            "kind": "list",
            "list": os.path.realpath(list_path),
            "base": os.path.realpath(base),
        }
        index = self._indexed(
            identity,
            base,
            f"reading {shown}",
            lambda p: read_file_list(str(list_path), base, shown, p),
            "listed file",
        )
        self._report_list(index, shown, base)
        return index

    def _report_list(self, index: Index, shown: str, base: str) -> None:
        """One warning naming the lines whose file is missing, or a one-line error.

        :raises UserError: when the list names no readable file, or (``strict``) any missing.
        """
        missing = index.skipped.get("missing", Skips())
        examples = [f"{name} ({why})" for name, why in missing.examples]
        lines = _count(missing.count, "line", "lines")
        if self.strict and missing.count:
            raise UserError(
                f"data.file_list={shown}: {lines} naming no regular file under {base} "
                f"(data.strict=true): {_name_some(examples, missing.count)}; fix the list, "
                "or set data.strict=false to skip such lines"
            )
        if not len(index.paths):
            named = f": {_name_some(examples, missing.count)}" if missing.count else ""
            raise UserError(f"data.file_list={shown} names no file that exists under {base}{named}")
        if missing.count:
            print(
                f"warning: skipped {lines} of data.file_list={shown} naming no regular file "
                f"under {base}: {_name_some(examples, missing.count)}",
                file=sys.stderr,
            )


def _what(kinds: list[tuple[str, Skips]]) -> str:
    return _and([_count(skips.count, *SKIP_KINDS[kind][:2]) for kind, skips in kinds])
