"""Embeddings of images as a table: one row per image, written as parquet, npy or safetensors.

A row holds the image's ``key`` (its file path for ``data=folder``, the sample key a dataset
gives, else ``split/index``), its ``split`` (``train``, ``val``, or ``""`` for images given
directly), its ``label`` (``-1`` when unknown) and class name, and its embedding: the frozen
encoder's pooled features, ``float32 [D]``, and optionally the output of one of the method's
heads (``head=projector``). Every file is written atomically: a run killed or failing while it
writes leaves no partial file at the destination.

- ``.parquet`` (pyarrow): columns ``key``, ``split``, ``label``, ``class``, ``embedding``
  (a fixed-size list of float32) and the head's column; pandas reads it with
  ``pd.read_parquet``, ``np.stack(df.embedding)`` is the ``[N, D]`` matrix.
- ``.npy``: one structured array, ``np.load(path)["embedding"]`` is ``[N, D]`` and
  ``["key"]``, ``["split"]``, ``["label"]`` the rest (no pickle needed).
- ``.safetensors``: tensors ``embedding`` ``[N, D]``, ``label`` ``[N]`` and the head's; the
  keys, splits and class names are JSON lists in the file's metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssl_core.errors import UserError
from ssl_core.files import write_atomic

FORMATS = (".parquet", ".npy", ".safetensors")
#: Column names a head may not take.
FIXED_COLUMNS = ("key", "split", "label", "class", "embedding")


def check_format(path: str | Path, option: str = "out") -> Path:
    """``path`` as a Path when its suffix is a format this module writes.

    :raises UserError: naming the valid suffixes.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in FORMATS:
        raise UserError(
            f"{option}={path}: cannot tell the format from '{path.suffix or 'no suffix'}'; "
            f"valid: {', '.join(FORMATS)}"
        )
    if path.is_dir():
        raise UserError(f"{option}={path} is a folder; name the file to write")
    return path


@dataclass
class Embeddings:
    """The embeddings of a set of images, in the order they were given.

    ``embeddings`` is ``float32 [N, D]``; ``keys``, ``splits``, ``labels`` (``int64``, ``-1``
    when unknown) describe the rows; ``head`` holds ``float32 [N, H]`` outputs of the head
    named ``head_name`` when one was asked for; ``classes`` names the labels.
    """

    keys: list[str]
    splits: list[str]
    labels: np.ndarray
    embeddings: np.ndarray
    classes: list[str] | None = None
    head_name: str | None = None
    head: np.ndarray | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        head = f", {self.head_name} {tuple(self.head.shape)}" if self.head is not None else ""
        return f"Embeddings({len(self)} rows, embedding {tuple(self.embeddings.shape)}{head})"

    def class_names(self) -> list[str | None]:
        """Each row's class name (None when unlabelled)."""
        names = self.classes or []
        return [names[i] if 0 <= i < len(names) else None for i in self.labels.tolist()]

    def to_pandas(self) -> Any:
        """A pandas DataFrame: one row per image, the embedding as an array per row."""
        import pandas as pd

        columns: dict[str, Any] = {
            "key": self.keys,
            "split": self.splits,
            "label": self.labels,
            "class": self.class_names(),
            "embedding": list(self.embeddings),
        }
        if self.head is not None:
            columns[str(self.head_name)] = list(self.head)
        return pd.DataFrame(columns)

    def save(self, path: str | Path) -> Path:
        """Write the table to ``path`` (``.parquet``, ``.npy`` or ``.safetensors``), atomically."""
        path = check_format(path)
        writer = {".parquet": self._parquet, ".npy": self._npy, ".safetensors": self._st}
        return write_atomic(path, writer[path.suffix.lower()])

    def _parquet(self, tmp: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        def vectors(matrix: np.ndarray) -> Any:
            flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
            return pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])

        columns = {
            "key": pa.array(self.keys, pa.string()),
            "split": pa.array(self.splits, pa.string()),
            "label": pa.array(self.labels.astype(np.int64)),
            "class": pa.array(self.class_names(), pa.string()),
            "embedding": vectors(self.embeddings),
        }
        if self.head is not None:
            columns[str(self.head_name)] = vectors(self.head)
        table = pa.table(columns).replace_schema_metadata(self.metadata)
        pq.write_table(table, str(tmp))

    def _npy(self, tmp: Path) -> None:
        width = max((len(k) for k in self.keys), default=1)
        fields: list[tuple[Any, ...]] = [
            ("key", f"U{max(width, 1)}"),
            ("split", "U5"),
            ("label", "i8"),
            ("embedding", "f4", (self.embeddings.shape[1],)),
        ]
        if self.head is not None:
            fields.append((str(self.head_name), "f4", (self.head.shape[1],)))
        table = np.zeros(len(self), dtype=fields)
        table["key"], table["split"], table["label"] = self.keys, self.splits, self.labels
        table["embedding"] = self.embeddings
        if self.head is not None:
            table[str(self.head_name)] = self.head
        with open(tmp, "wb") as handle:
            np.save(handle, table, allow_pickle=False)

    def _st(self, tmp: Path) -> None:
        from safetensors.numpy import save_file

        tensors = {
            "embedding": np.ascontiguousarray(self.embeddings, dtype=np.float32),
            "label": np.ascontiguousarray(self.labels, dtype=np.int64),
        }
        if self.head is not None:
            tensors[str(self.head_name)] = np.ascontiguousarray(self.head, dtype=np.float32)
        metadata = {
            **self.metadata,
            "keys": json.dumps(self.keys),
            "splits": json.dumps(self.splits),
            "classes": json.dumps(self.classes),
        }
        save_file(tensors, str(tmp), metadata=metadata)
