"""``data=hf``: images of a Hugging Face ``datasets`` dataset on disk, decoded per item.

The dataset stays memory-mapped (Arrow files, never loaded whole): an item is one row of the
image column, its bytes decoded with PIL like the ``folder`` dataset's files; labels are read
once, as one column, when the dataset is built. A ``load_from_disk`` folder and ``.arrow``
files are used in place; ``.parquet`` files are converted once into an Arrow copy in
``data.cache_dir`` (``datasets``' own cache by default), as large as the data.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ssl_core import UserError, hookimpl

from .images import pil_to_rgb, reason
from .lazy_images import LazyImages
from .split import stratified_split

if TYPE_CHECKING:
    from datasets import Dataset

    from ssl_core import ImageData


class HFImages(LazyImages):
    """``(image, label)`` items: rows ``rows`` of a memory-mapped ``datasets.Dataset``.

    ``dataset`` holds the image column only (``Image(decode=False)`` values, ``{"bytes",
    "path"}``, or raw bytes); ``labels`` is ``int64 [len(dataset)]``, -1 when unlabelled.
    Pickles to a few kilobytes (``datasets`` pickles a memory-mapped table by its file
    paths). ``key(i)`` is the row's index in the split, as a string.
    """

    def __init__(
        self,
        dataset: Dataset,
        column: str,
        labels: np.ndarray,
        rows: np.ndarray | None = None,
        root: str = "",
        strict: bool = False,
    ) -> None:
        self.dataset = dataset
        self.column = column
        self.labels = labels
        self.rows = np.arange(len(dataset), dtype=np.int64) if rows is None else np.asarray(rows)
        self.root = root
        self.strict = bool(strict)
        self.unreadable: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def key(self, index: int) -> str:
        return str(int(self.rows[index]))

    def _label(self, index: int) -> int:
        return int(self.labels[self.rows[index]])

    def _name(self, index: int) -> str:
        return f"row {int(self.rows[index])} of {self.root}"

    def _load(self, index: int) -> np.ndarray:
        import io

        from PIL import Image

        value = self.dataset[int(self.rows[index])][self.column]
        if isinstance(value, dict):
            if value.get("bytes") is not None:
                source: Any = io.BytesIO(value["bytes"])
            elif value.get("path"):
                # datasets reads a relative path from the working folder; the dataset's own
                # folder is the likelier home when it is not there
                source = value["path"]
                if not os.path.isabs(source) and not os.path.exists(source):
                    base = self.root if os.path.isdir(self.root) else os.path.dirname(self.root)
                    source = os.path.join(base, source)
            else:
                raise ValueError("the image value is empty")
        elif isinstance(value, (bytes, bytearray)):
            source = io.BytesIO(value)
        else:
            raise ValueError(f"the image value is a {type(value).__name__}")
        with Image.open(source) as image:
            return pil_to_rgb(image)


# --- opening the dataset ---------------------------------------------------------------------


def _files(path: str) -> list[Path]:
    if any(c in path for c in "*?["):
        return [Path(p) for p in sorted(glob.glob(os.path.expanduser(path), recursive=True))]
    root = Path(path).expanduser()
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix in (".arrow", ".parquet"))


def open_dataset(path: str, cache_dir: str | None) -> Any:
    """A ``Dataset`` or ``DatasetDict`` from a ``load_from_disk`` folder or Arrow/parquet files.

    :raises UserError: when ``path`` does not exist or holds none of these.
    """
    import datasets

    root = Path(path).expanduser()
    is_glob = any(c in path for c in "*?[")
    if not is_glob and not root.exists():
        raise UserError(f"data.path={path} does not exist")
    saved = root.is_dir() and any(
        (root / name).is_file() for name in ("dataset_dict.json", "state.json")
    )
    try:
        if saved:
            return datasets.load_from_disk(str(root))
        files = _files(path)
        kinds = {f.suffix for f in files}
        if not files or len(kinds) > 1:
            what = "both .arrow and .parquet files" if files else "no .arrow or .parquet file"
            raise UserError(
                f"data.path={path} holds {what}; give a save_to_disk folder, or .arrow or "
                ".parquet files of one kind"
            )
        if kinds == {".arrow"}:
            parts = [datasets.Dataset.from_file(str(f)) for f in files]
            return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
        if not sys.stderr.isatty():
            datasets.disable_progress_bars()
        return datasets.Dataset.from_parquet(
            [str(f) for f in files],
            cache_dir=None if cache_dir is None else str(Path(cache_dir).expanduser()),
        )
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"cannot open data.path={path} as a datasets dataset: {reason(exc)}"
        ) from None


def _pick(found: Any, split: str | None, key: str, path: str) -> tuple[str | None, Any]:
    """``(name, dataset)``: one split of a ``DatasetDict`` (``split``, else ``train``, else the
    only one), or ``(None, found)`` for a single dataset."""
    import datasets

    if not isinstance(found, datasets.DatasetDict):
        if split is not None:
            raise UserError(
                f"{key}={split}, but data.path={path} holds one dataset, not a DatasetDict "
                "of splits; leave it out"
            )
        return None, found
    names = sorted(found)
    if split is None:
        if "train" not in found and len(names) > 1:
            raise UserError(
                f"data.path={path} holds the splits {', '.join(names)}; choose one with data.split"
            )
        split = "train" if "train" in found else names[0]
    if split not in found:
        raise UserError(
            f"{key}={split} is not a split of data.path={path}; valid: {', '.join(names)}"
        )
    return split, found[split]


def image_column(dataset: Any, column: str, path: str) -> Any:
    """The dataset's image column alone, as undecoded values (bytes and path)."""
    import datasets

    features = dataset.features
    if column not in features:
        raise UserError(
            f"data.image_column={column} is not a column of data.path={path}; "
            f"columns: {', '.join(features)}"
        )
    feature = features[column]
    images = dataset.select_columns([column])
    if isinstance(feature, datasets.Image):
        return images.cast_column(column, datasets.Image(decode=False))
    if isinstance(feature, datasets.Value) and feature.dtype in ("binary", "large_binary"):
        return images
    raise UserError(
        f"data.image_column={column} of data.path={path} holds {feature}, not images "
        "(an Image feature or encoded bytes)"
    )


def labels_of(
    dataset: Any, column: str, names: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """``int64 [N]`` labels (-1 where missing) and the class names of a label column.

    A ``ClassLabel`` gives its names; integers give ``"0"``…``"max"``; strings are the
    classes themselves, sorted (or looked up in ``names``, the training split's).
    """
    import datasets
    import pyarrow.compute as pc

    feature = dataset.features[column]
    values = dataset.with_format("arrow")[column]
    if isinstance(feature, datasets.ClassLabel) or (
        isinstance(feature, datasets.Value) and "int" in feature.dtype
    ):
        labels = pc.fill_null(values, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        labels[labels < 0] = -1
        if isinstance(feature, datasets.ClassLabel):
            return labels, list(feature.names)
        return labels, [str(c) for c in range(int(labels.max(initial=-1)) + 1)]
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        text = values.to_numpy(zero_copy_only=False)
        present = np.array([v is not None for v in text], dtype=bool)
        found = {str(v) for v in text[present]}
        if names is None:
            names = sorted(found)
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted(found - index.keys())
        if unknown:
            raise UserError(
                f"data.label_column={column}: the held-out split has classes the training "
                f"split lacks ({', '.join(unknown[:3])})"
            )
        labels = np.array(
            [index[str(v)] if ok else -1 for v, ok in zip(text, present, strict=True)]
        )
        return labels.astype(np.int64), list(names)
    raise UserError(
        f"data.label_column={column} holds {feature}; class labels are a ClassLabel, "
        "integers or strings (or set data.label_column=null)"
    )


class HFDataset:
    """Run plugin of ``data=hf``: a ``datasets`` dataset on disk, memory-mapped.

    Labelled when the label column exists and every row has a label, unlabelled without the
    column. The kNN held-out split is ``data.val_split`` when given, otherwise a stratified
    ``data.val_fraction`` of the training split.
    """

    def __init__(
        self,
        path: str | None,
        split: str | None = None,
        val_split: str | None = None,
        image_column: str = "image",
        label_column: str | None = "label",
        val_fraction: float = 0.05,
        strict: bool = False,
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        self.seed = seed  # trainer.seed: it draws the held-out split
        self.path, self.split, self.val_split = path, split, val_split
        self.image_column, self.label_column = image_column, label_column
        self.val_fraction = val_fraction
        self.strict = bool(strict)
        self.cache_dir = cache_dir

    def _labels(
        self, dataset: Any, names: list[str] | None = None
    ) -> tuple[np.ndarray | None, list[str] | None]:
        column = self.label_column
        if column is None or column not in dataset.features:
            return None, None
        labels, classes = labels_of(dataset, column, names)
        missing = labels < 0
        if missing.all():
            return None, None
        if missing.any():
            raise UserError(
                f"data.label_column={column}: {int(missing.sum())} of {len(labels)} rows have "
                f"no label, e.g. row {int(np.flatnonzero(missing)[0])}; label every row or none "
                "(data.label_column=null)"
            )
        return labels, classes

    @hookimpl
    def ssl_build_dataset(self) -> ImageData:
        from ssl_core import ImageData

        if self.path is None or not str(self.path).strip():
            raise UserError(
                "data.path is required for data=hf (a save_to_disk folder or .arrow/.parquet files)"
            )
        path = str(self.path)
        root = str(Path(path).expanduser().absolute())
        found = open_dataset(path, self.cache_dir)
        train_name, train = _pick(found, self.split, "data.split", path)
        images = image_column(train, self.image_column, path)
        labels, classes = self._labels(train)
        unlabelled = np.full(len(train), -1, dtype=np.int64)

        def items(
            dataset: Any, labels: np.ndarray | None, rows: np.ndarray | None = None
        ) -> HFImages:
            labels = unlabelled if labels is None else labels
            return HFImages(dataset, self.image_column, labels, rows, root, self.strict)

        if self.val_split is not None:
            if self.val_split == train_name:
                raise UserError(
                    f"data.val_split={self.val_split} is the training split; choose another"
                )
            _, val = _pick(found, self.val_split, "data.val_split", path)
            kind = _label_kind(train, self.label_column)
            val_labels, val_classes = self._labels(val, classes if kind == "string" else None)
            if labels is None or val_labels is None:
                where = "the training split" if labels is None else f"split {self.val_split}"
                raise UserError(
                    f"data.val_split={self.val_split} is the labelled kNN query set, but "
                    f"{where} has no labels in data.label_column={self.label_column}"
                )
            if kind == "classlabel" and val_classes != classes:
                raise UserError(
                    f"the ClassLabel names of split {self.val_split} differ from those of the "
                    "training split; the kNN query set needs the same classes"
                )
            if len(val_classes) > len(classes):  # integer labels: 0 .. the largest of both
                classes = val_classes
            return ImageData(
                train=items(images, labels),
                val=items(image_column(val, self.image_column, path), val_labels),
                classes=classes,
            )
        if labels is None:
            if self.label_column is not None and self.label_column not in train.features:
                print(
                    f"note: data.path={path} has no column '{self.label_column}' "
                    f"(columns: {', '.join(train.features)}); training unlabelled, no kNN",
                    file=sys.stderr,
                )
            return ImageData(train=items(images, None))
        train_idx, val_idx = stratified_split(labels, self.val_fraction, self.seed)
        return ImageData(
            train=items(images, labels, train_idx),
            val=items(images, labels, val_idx),
            classes=classes,
        )


def _label_kind(dataset: Any, column: str | None) -> str:
    """``classlabel``, ``string`` or ``int``: how a label column names its classes."""
    import datasets

    feature = dataset.features.get(column) if column else None
    if isinstance(feature, datasets.ClassLabel):
        return "classlabel"
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        return "string"
    return "int"
