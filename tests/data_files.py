"""Data for the webdataset and hf tests, written from generated images; a batch recorder.

Sample ``i`` is a ``SIZE``×``SIZE`` PNG whose pixels all equal ``pixel(i)``, so a test can tell
which sample it read from the image alone. :class:`BatchRecorder` is a plugin that writes the
labels of every micro-batch each process trains on; registered in a launcher script with
``get_plugins(extra=[("batches", BatchRecorder())])``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ssl_core import hookimpl

SIZE = 32

_STORE_TEMPLATE: list[Path] = []


def pixel(i: int) -> tuple[int, int, int]:
    return (i % 256, (i // 256) % 256, 7)


def image(i: int) -> np.ndarray:
    return np.broadcast_to(np.array(pixel(i), dtype=np.uint8), (SIZE, SIZE, 3)).copy()


def png(i: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image(i)).save(out, format="PNG")
    return out.getvalue()


def write_shards(
    folder: Path,
    count: int,
    per_shard: int,
    label: Callable[[int], int | None] | None = lambda i: i % 3,
    name: str = "train",
) -> str:
    """``count`` samples in shards of ``per_shard``; the brace pattern of all of them.

    Sample ``i`` has key ``s{i:05d}``, image :func:`image(i)` and, unless ``label`` is None or
    returns None, a ``.cls`` of ``label(i)``.
    """
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    pattern = str(folder / f"{name}-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=per_shard, mtime=0, verbose=0) as sink:
        for i in range(count):
            sample: dict[str, Any] = {"__key__": f"s{i:05d}", "png": png(i)}
            value = label(i) if label is not None else None
            if value is not None:
                sample["cls"] = value
            sink.write(sample)
    last = (count - 1) // per_shard
    return str(folder / f"{name}-{{000000..{last:06d}}}.tar")


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    """A tar of exactly these members (name, data), in this order."""
    import webdataset as wds

    with wds.TarWriter(str(path), mtime=0) as sink:
        for name, data in members:
            # TarWriter writes whole samples; one member per sample keeps the given order
            key, ext = name.split(".", 1)
            sink.write({"__key__": key, ext: data})


def write_hf(
    folder: Path,
    splits: dict[str, int],
    label: Callable[[int], int] | None = lambda i: i % 3,
    names: tuple[str, ...] = ("cat", "dog", "owl"),
) -> Path:
    """A ``DatasetDict`` saved with ``save_to_disk``: ``{split: count}``, sample ids running on.

    Columns ``image`` (an Image feature holding PNG bytes) and, with ``label``, ``label`` (a
    ClassLabel of ``names``).
    """
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets

    datasets.disable_progress_bars()
    features = {"image": datasets.Image()}
    if label is not None:
        features["label"] = datasets.ClassLabel(names=list(names))
    parts, start = {}, 0
    for split, count in splits.items():
        ids = range(start, start + count)
        columns: dict[str, list] = {"image": [{"bytes": png(i), "path": None} for i in ids]}
        if label is not None:
            columns["label"] = [label(i) for i in ids]
        parts[split] = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
        start += count
    datasets.DatasetDict(parts).save_to_disk(str(folder))
    return folder


def sample_id(image: np.ndarray) -> int:
    """The id :func:`image` drew ``image`` for."""
    r, g, _ = (int(v) for v in image[0, 0])
    return r + 256 * g


class BatchRecorder:
    """Writes ``[step, labels]`` of every micro-batch to ``$SSL_TEST_RECORD/rank{r}-labels.jsonl``.

    ``step`` is the number of optimizer steps taken before the batch (the loss hook's
    ``info.step``).
    """

    def __init__(self) -> None:
        self.folder = Path(os.environ["SSL_TEST_RECORD"])
        self.labels: list[int] = []

    @hookimpl(wrapper=True)
    def ssl_make_views(self, batch: dict[str, Any]) -> Any:
        self.labels = batch["label"].tolist()
        return (yield)

    @hookimpl(wrapper=True)
    def ssl_compute_loss(self, info: Any) -> Any:
        from ssl_core import rank

        out = yield
        with open(self.folder / f"rank{rank()}-labels.jsonl", "a") as f:
            f.write(json.dumps([info.step, self.labels]) + "\n")
        return out


class Ids:
    """A sample transform for loader tests: the sample's id, read from its pixels."""

    def __call__(self, image: np.ndarray) -> dict[str, Any]:
        import torch

        return {"id": torch.tensor(sample_id(image))}


def tracking_uri(folder: Path) -> str:
    """The URI of a new, empty MLflow SQLite store in ``folder``.

    Creating a store's tables takes seconds (dozens of migrations); the store is copied from
    one made once per test session instead.
    """
    import atexit
    import shutil
    import tempfile

    if not _STORE_TEMPLATE:
        from mlflow.tracking import MlflowClient

        template = Path(tempfile.mkdtemp(prefix="ssl-test-store-")) / "mlflow.db"
        atexit.register(shutil.rmtree, template.parent, True)
        MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()
        _STORE_TEMPLATE.append(template)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_STORE_TEMPLATE[0], folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"
