"""The built-in datasets: ``digits`` (the default), ``folder`` and ``synthetic``.

A built-in plugin of the core, written exactly like an external one. It is imported whenever
plugins are listed, so torch, scikit-learn and PIL are imported only when a dataset is built.

- ``digits``: scikit-learn's bundled 8×8 handwritten digits (1797 images, 10 classes), so a run
  works offline out of the box; upsampled once to ``data.image_size``.
- ``folder``: every image file under ``data.path``, loaded lazily; first-level subfolders are
  the classes when every image sits in one. Files that do not open as images are skipped with
  one warning (or stop the run with ``data.strict=true``).
- ``synthetic``: seeded random images whose classes differ by mean colour (tests, smoke runs).

Labelled datasets are split into train/val per class (stratified), seeded by ``trainer.seed``:
train is what SSL trains on and the kNN memory bank, val is the kNN query set.
"""

from __future__ import annotations

import colorsys
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import hookimpl, option
from .errors import ConfigError, UserError

if TYPE_CHECKING:
    from collections.abc import Callable

    from omegaconf import DictConfig
    from PIL import Image

    from .data import ImageData

#: File extensions the ``folder`` dataset reads (compared case-insensitively).
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".webp")

# Independent random streams drawn from the one ``trainer.seed``.
_SPLIT_STREAM = 0
_SYNTHETIC_COLOUR_STREAM = 1
_SYNTHETIC_PIXEL_STREAM = 2

#: How many unreadable files a warning or an error names before it says "and N more".
_NAMED_FILES = 5

#: PIL modes with an alpha channel ("RGBa" and "La" are premultiplied).
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})

_DIGITS_CLASSES = 10
_DIGITS_MAX_VALUE = 16.0
_DIGITS_CHUNK = 256


def _rng(seed: int, *stream: int) -> np.random.Generator:
    # SeedSequence wants non-negative entropy; the modulus keeps negative seeds usable.
    return np.random.default_rng([int(seed) % 2**64, *stream])


# --- options ---------------------------------------------------------------------------------


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


def _check_val_fraction(value: float) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ConfigError(f"data.val_fraction={value} is out of range; must be > 0 and < 1")
    return value


# --- splits and image sequences --------------------------------------------------------------


def stratified_split(
    labels: Sequence[int] | np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a per-class random train/val split, each sorted.

    Each class with at least two items puts ``round(n * val_fraction)`` of them in val, but
    at least one and never all, so both splits hold every such class; a class with one item
    stays in train. Deterministic for a given ``seed``.
    """
    labels = np.asarray(labels)
    rng = _rng(seed, _SPLIT_STREAM)
    val: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        n_val = int(np.floor(len(members) * val_fraction + 0.5))
        n_val = min(max(n_val, 1), len(members) - 1)
        val.append(rng.permutation(members)[:n_val])
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


class ArrayImages(Sequence):
    """``(image, label)`` items over in-memory grayscale images, given as RGB on access.

    ``images`` is ``uint8 [N,S,S]``; ``indices`` selects this split's rows. Storing one channel
    keeps memory at a third; the copy into ``HxWx3`` happens per item, in the worker.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
        self.images = images
        self.labels = labels
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        row = self.indices[index]
        return np.repeat(self.images[row][..., None], 3, axis=2), int(self.labels[row])


class UnreadableImage(UserError):
    """An image file that cannot be decoded when it is loaded, with ``data.strict=true``.

    The message is one line. A DataLoader worker's exception comes back to the main process
    rebuilt from a message that embeds the worker's traceback; only our own line is kept.
    """

    def __init__(self, message: str) -> None:
        lines = [line for line in str(message).splitlines() if line.strip()]
        if len(lines) > 1:
            marker = f"{type(self).__qualname__}: "
            last = lines[-1]
            message = last[last.index(marker) + len(marker) :] if marker in last else last
        super().__init__(message)


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
                reason = _reason(exc)
                if self.strict:
                    raise UnreadableImage(
                        f"cannot read image {self.paths[i]}: {reason}; fix or remove it, "
                        "or set data.strict=false to skip unreadable images"
                    ) from exc
                self.unreadable[i] = reason
                print(
                    f"warning: cannot read image {self.paths[i]} ({reason}); "
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


class SyntheticImages(Sequence):
    """``(image, label)`` items drawn on access: class colour plus Gaussian pixel noise.

    Item ``i`` always comes from the same random stream (``seed``, ``ids[i]``), so nothing is
    stored but ids and labels, and workers reproduce the same images.
    """

    #: Pixel noise around the class colour, in 8-bit levels.
    NOISE_STD = 32.0

    def __init__(
        self,
        ids: np.ndarray,
        labels: np.ndarray,
        colours: np.ndarray,
        image_size: int,
        seed: int,
    ) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.colours = colours
        self.image_size = int(image_size)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        sample_id = int(self.ids[index])
        label = int(self.labels[index])
        rng = _rng(self.seed, _SYNTHETIC_PIXEL_STREAM, sample_id)
        shape = (self.image_size, self.image_size, 3)
        noise = rng.standard_normal(shape, dtype=np.float32) * self.NOISE_STD
        image = np.clip(self.colours[label] + noise, 0.0, 255.0)
        return np.rint(image).astype(np.uint8), label


# --- image decoding --------------------------------------------------------------------------


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """A single-channel image of more than 8 bits per pixel, scaled (not clipped) to 0–255."""
    values = values.astype(np.float64)
    if mode.startswith("I;16") or (mode == "I" and values.min() >= 0 and values.max() <= 65535):
        # 16-bit PNGs open as I;16 or I; their full scale is 65535, and 65535 / 257 = 255.
        scaled = values / 257.0
    elif mode == "F" and values.min() >= 0.0 and values.max() <= 1.0:
        scaled = values * 255.0
    else:
        low, high = values.min(), values.max()
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0.0
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """A PIL image as ``uint8 HxWx3`` RGB, whatever its mode.

    EXIF orientation is applied. Grayscale and palette images are expanded to RGB. An alpha
    channel (RGBA, LA, PA, or a palette/colour-key transparency) is composited on **black**:
    the colour under fully transparent pixels is arbitrary in many files, so it must not leak
    into the image. 16-bit (``I;16``, ``I``) and float (``F``) images are scaled to 8 bits.
    """
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return np.array(image, dtype=np.uint8)
    if mode.startswith("I") or mode == "F":
        gray = _scale_to_uint8(np.asarray(image), mode)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[..., 3:]
        # rounded integer rgb·α/255 (alpha 255 keeps the pixel, alpha 0 gives black)
        return ((rgba[..., :3] * alpha + 127) // 255).astype(np.uint8)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


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
        reason = error.strerror or _reason(error)
        if unreadable_dirs is None or where == root:
            raise UserError(f"cannot read the folder {where}: {reason}; check its permissions")
        unreadable_dirs.append((where, reason))

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


def check_image(path: Path | str) -> str | None:
    """Why ``path`` is not a readable image, or ``None`` when it is.

    Cheap enough to run on every file of a dataset: PIL reads the header and ``verify()``
    checks what the format allows without decoding pixels (PNG chunk checksums, so a
    truncated PNG is caught). A JPEG or BMP whose pixel data is cut short passes and is
    caught when it is loaded (see :class:`FolderImages`).
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error...
        return _reason(exc)
    return None


def _name_some(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMED_FILES])
    more = len(names) - _NAMED_FILES
    return f"{shown} and {more} more" if more > 0 else shown


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# --- run plugins -----------------------------------------------------------------------------


class DigitsDataset:
    """Run plugin of ``data=digits``: scikit-learn's 8×8 digits upsampled to ``S×S``."""

    def __init__(self, val_fraction: float) -> None:
        self.val_fraction = val_fraction

    @hookimpl
    def ssl_build_dataset(self, config: DictConfig) -> ImageData:
        from .data import ImageData

        val_fraction = _check_val_fraction(self.val_fraction)
        images, labels = load_digits(int(config.data.image_size))
        train_idx, val_idx = stratified_split(labels, val_fraction, config.trainer.seed)
        return ImageData(
            train=ArrayImages(images, labels, train_idx),
            val=ArrayImages(images, labels, val_idx),
            classes=[str(c) for c in range(_DIGITS_CLASSES)],
        )


def load_digits(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as ``uint8 [N,S,S]`` on a 0–255 scale, and their ``int64 [N]`` labels.

    Upsampled bilinearly, in chunks so the float intermediate stays small for large ``S``.
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    source = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / _DIGITS_MAX_VALUE))
    out = np.empty((len(source), image_size, image_size), dtype=np.uint8)
    for start in range(0, len(source), _DIGITS_CHUNK):
        chunk = source[start : start + _DIGITS_CHUNK, None]
        if image_size != chunk.shape[-1]:
            chunk = F.interpolate(
                chunk, size=(image_size, image_size), mode="bilinear", align_corners=False
            )
        out[start : start + len(chunk)] = chunk[:, 0].clamp(0, 255).round().to(torch.uint8)
    return out, bunch.target.astype(np.int64)


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
        from .data import ImageData

        root = self._root()
        files = self._readable(root)
        parts = [f.relative_to(root).parts for f in files]
        classes = sorted({p[0] for p in parts if len(p) > 1})
        paths = [str(f) for f in files]
        if len(classes) < 2 or any(len(p) == 1 for p in parts):
            return ImageData(train=FolderImages(paths, [-1] * len(paths), self.strict))
        val_fraction = _check_val_fraction(self.val_fraction)
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
            reason = check_image(path)
            if reason is None:
                files.append(path)
            else:
                bad.append((os.path.relpath(path, root), reason))
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


class SyntheticDataset:
    """Run plugin of ``data=synthetic``: seeded random images, classes told apart by colour.

    Class ``c`` has a mean colour of hue ``c / num_classes`` (plus a seeded offset) and each
    image adds Gaussian noise, so a kNN on even a random encoder's features beats chance.
    Labels cycle ``0, 1, ..., num_classes-1`` over the samples, so classes are balanced.
    """

    def __init__(self, num_samples: int, num_classes: int, val_fraction: float) -> None:
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.val_fraction = val_fraction

    @hookimpl
    def ssl_build_dataset(self, config: DictConfig) -> ImageData:
        from .data import ImageData

        val_fraction = _check_val_fraction(self.val_fraction)
        seed = int(config.trainer.seed)
        colours = synthetic_colours(self.num_classes, seed)
        ids = np.arange(self.num_samples, dtype=np.int64)
        labels = ids % self.num_classes
        train_idx, val_idx = stratified_split(labels, val_fraction, seed)
        size = int(config.data.image_size)

        def split(idx: np.ndarray) -> SyntheticImages:
            return SyntheticImages(ids[idx], labels[idx], colours, size, seed)

        return ImageData(
            train=split(train_idx),
            val=split(val_idx),
            classes=[f"class_{c}" for c in range(self.num_classes)],
        )


def synthetic_colours(num_classes: int, seed: int) -> np.ndarray:
    """``float32 [C, 3]`` class colours on the 0–255 scale: evenly spaced hues, seeded offset."""
    rng = _rng(seed, _SYNTHETIC_COLOUR_STREAM)
    offset = rng.random()
    colours = []
    for c in range(num_classes):
        # alternate brightness so that neighbouring hues of many classes still differ
        value = 0.85 if c % 2 == 0 else 0.55
        colours.append(colorsys.hsv_to_rgb((offset + c / num_classes) % 1.0, 0.7, value))
    return np.asarray(colours, dtype=np.float32) * 255.0


# --- registration ----------------------------------------------------------------------------


def _digits(config: DictConfig) -> DigitsDataset:
    return DigitsDataset(val_fraction=config.data.val_fraction)


def _folder(config: DictConfig) -> FolderDataset:
    return FolderDataset(
        path=config.data.path,
        val_fraction=config.data.val_fraction,
        strict=config.data.get("strict", False),
    )


def _synthetic(config: DictConfig) -> SyntheticDataset:
    return SyntheticDataset(
        num_samples=config.data.num_samples,
        num_classes=config.data.num_classes,
        val_fraction=config.data.val_fraction,
    )


@hookimpl
def ssl_register_datasets(register: Callable[..., None]) -> None:
    register(
        "digits",
        _digits,
        options=DigitsOptions,
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
