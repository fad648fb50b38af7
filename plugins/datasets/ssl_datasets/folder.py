"""``data=folder``: every image file under ``data.path``, loaded lazily; class subfolders give labels."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ssl_core import hookimpl
from ssl_core.errors import UserError

from .images import UnreadableImage, check_image, pil_to_rgb, reason
from .split import check_val_fraction, stratified_split

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ssl_core.data import ImageData

#: File extensions the ``folder`` dataset reads (compared case-insensitively).
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".webp")

#: How many unreadable files a warning or an error names before it says "and N more".
_NAMED_FILES = 5


class FolderImages(Sequence):
    """``(image, label)`` items over image files, each opened with PIL when it is accessed.

    Holds only paths and labels, so it is small to pickle into DataLoader workers. A file that
    fails to decode (a truncated JPEG whose header is fine) raises :class:`UnreadableImage`
    when ``strict``; otherwise the next readable item (by index, wrapping around) stands in
    for it, so the substitute depends only on which files are bad, and a warning names the
    file once per process.
    """

    def __init__(self, paths: Sequence[str], labels: Sequence[int], strict: bool = False) -> None:
        self.paths = list(paths)
        self.labels = list(labels)
        self.strict = bool(strict)
        # index -> reason, for the files this process found unreadable
        self.unreadable: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        count = len(self.paths)
        if not -count <= index < count:
            raise IndexError(f"index {index} out of range for {count} images")
        for offset in range(count):
            i = (index + offset) % count
            if i in self.unreadable:
                continue
            try:
                return self._load(i), int(self.labels[i])
            except Exception as exc:
                why = reason(exc)
                if self.strict:
                    raise UnreadableImage(
                        f"cannot read image {self.paths[i]}: {why}; fix or remove it, "
                        "or set data.strict=false to skip unreadable images"
                    ) from exc
                self.unreadable[i] = why
                print(
                    f"warning: cannot read image {self.paths[i]} ({why}); "
                    "the next readable image is used in its place",
                    file=sys.stderr,
                )
        raise UnreadableImage(
            f"none of the {count} images could be read, e.g. {self.paths[0]}: "
            f"{self.unreadable.get(0, 'unreadable')}"
        )

    def _load(self, index: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            return pil_to_rgb(image)


def find_images(root: Path, unreadable_dirs: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Image files under ``root`` (recursively, sorted), by :data:`IMAGE_EXTENSIONS`.

    Hidden files and folders (names starting with ``.``) are skipped: they are metadata such
    as macOS ``._name.jpg`` files, not images. Symlinked folders are followed once.

    :param unreadable_dirs: subfolders that cannot be listed are appended here as
        ``(path, reason)``; without it they raise like ``root`` does.
    :raises UserError: when ``root`` (or, without ``unreadable_dirs``, a subfolder) cannot
        be listed, e.g. permission denied.
    """
    found: list[Path] = []
    seen: set[str] = set()

    def unreadable(error: OSError) -> None:
        where = Path(error.filename) if error.filename is not None else root
        why = error.strerror or reason(error)
        if unreadable_dirs is None or where == root:
            raise UserError(f"cannot read the folder {where}: {why}; check its permissions")
        unreadable_dirs.append((where, why))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop, or a folder linked twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
    return found


def _name_some(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMED_FILES])
    more = len(names) - _NAMED_FILES
    return f"{shown} and {more} more" if more > 0 else shown


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class FolderDataset:
    """Run plugin of ``data=folder``: the image files under ``data.path``.

    When every image sits in a first-level subfolder and there are at least two such
    subfolders, the subfolder names (sorted) are the classes and a stratified val split is
    held out; otherwise every image is an unlabelled training image (label ``-1``, no val).
    A single subfolder is not taken as one class: a one-class kNN score says nothing.
    """

    def __init__(self, path: str | None, val_fraction: float, strict: bool = False) -> None:
        self.path = path
        self.val_fraction = val_fraction
        self.strict = bool(strict)

    def _root(self) -> Path:
        if self.path is None or not str(self.path).strip():
            raise UserError("data.path is required for data=folder (e.g. data.path=./images)")
        root = Path(self.path).expanduser()
        if not root.exists():
            raise UserError(f"data.path={self.path} does not exist; give a folder of images")
        if not root.is_dir():
            raise UserError(f"data.path={self.path} is not a directory; give a folder of images")
        return root

    @hookimpl
    def ssl_build_dataset(self, config: DictConfig) -> ImageData:
        from ssl_core.data import ImageData

        root = self._root()
        files = self._readable(root)
        parts = [f.relative_to(root).parts for f in files]
        classes = sorted({p[0] for p in parts if len(p) > 1})
        paths = [str(f) for f in files]
        if len(classes) < 2 or any(len(p) == 1 for p in parts):
            return ImageData(train=FolderImages(paths, [-1] * len(paths), self.strict))
        val_fraction = check_val_fraction(self.val_fraction)
        index = {name: i for i, name in enumerate(classes)}
        labels = np.array([index[p[0]] for p in parts], dtype=np.int64)
        train_idx, val_idx = stratified_split(labels, val_fraction, config.trainer.seed)

        def split(idx: np.ndarray) -> FolderImages:
            return FolderImages([paths[i] for i in idx], labels[idx].tolist(), self.strict)

        return ImageData(train=split(train_idx), val=split(val_idx), classes=classes)

    def _readable(self, root: Path) -> list[Path]:
        """The image files under ``root`` that open, after one warning naming the others.

        :raises UserError: when no file is a readable image, or (``strict``) when any file
            or subfolder is unreadable.
        """
        bad_dirs: list[tuple[Path, str]] = []
        candidates = find_images(root, unreadable_dirs=bad_dirs)
        if not candidates and not bad_dirs:
            valid = ", ".join(IMAGE_EXTENSIONS)
            raise UserError(
                f"no images found under data.path={self.path}; valid extensions: {valid} (any case)"
            )
        files: list[Path] = []
        bad: list[tuple[str, str]] = []  # (name relative to root, reason)
        for path in candidates:
            why = check_image(path)
            if why is None:
                files.append(path)
            else:
                bad.append((os.path.relpath(path, root), why))
        n_files = len(bad)
        bad += [(os.path.relpath(path, root) + "/", reason) for path, reason in bad_dirs]
        if not bad:
            return files
        what = " and ".join(
            _count(n, noun)
            for n, noun in ((n_files, "unreadable image"), (len(bad_dirs), "unreadable folder"))
            if n
        )
        names = _name_some([name for name, _ in bad])
        if self.strict:
            detailed = _name_some([f"{name} ({reason})" for name, reason in bad])
            raise UserError(
                f"{what} under data.path={self.path} (data.strict=true): {detailed}; "
                "fix or remove them, or set data.strict=false to skip them"
            )
        if not files:
            raise UserError(
                f"no readable images found under data.path={self.path}: {what} ({names})"
            )
        print(f"warning: skipped {what} under {root}: {names}", file=sys.stderr)
        return files
