"""Data: images per second each dataset delivers through the training loader, against the model.

The same JPEG-encoded images (smooth random pictures, ``S·8/7`` px on the short side like a
resized photo, quality 90) are written three ways: image files in class folders
(``data=folder``), webdataset tar shards (``data=webdataset``) and a ``save_to_disk`` Hugging
Face dataset (``data=hf``). Each dataset is built through its plugin and read through the
engine's training loader (:func:`ssl_core.data.loader.build_train_loader`: seeding,
collation, worker processes) with the view generator ``augment=auto`` picks for the device, so
an image is read, decoded, and turned into its views as in a run. ``read+decode`` is
``dataset[i]`` alone in this process. The model's rate is the engine's step alone at the same
size (:func:`step.step_only_rate`), the mean of a block before and a block after the loaders;
``data ÷ model`` above 1 means the data keeps up with training. On a CPU both compete for the
same cores, and the loader's rate is that of the data alone, the model idle.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .common import OBSERVERS, Setting, interleaved, loader_rate, log, median, quiet, table
from .step import step_only_rate
from .views import model_batch

DATASETS = ("folder", "webdataset", "hf")
CLASSES = 4


def jpegs(count: int, size: int) -> list[bytes]:
    """``count`` JPEGs of smooth random content, ``size·8/7`` by ``size·10/7`` pixels."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    height, width = round(size * 8 / 7), round(size * 10 / 7)
    out = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        picture = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        noisy = np.asarray(picture, dtype=np.int16) + rng.integers(-8, 9, (height, width, 3))
        buffer = io.BytesIO()
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def write_datasets(root: Path, images: list[bytes]) -> dict[str, list[str]]:
    """The images as a folder, tar shards and an HF dataset; ``{name: data overrides}``."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets
    import webdataset as wds

    for i, data in enumerate(images):
        folder = root / "folder" / f"class{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:06d}.jpg").write_bytes(data)
    (root / "shards").mkdir()
    with wds.ShardWriter(str(root / "shards" / "train-%06d.tar"), maxcount=64, verbose=0) as sink:
        for i, data in enumerate(images):
            sink.write({"__key__": f"{i:06d}", "jpg": data, "cls": i % CLASSES})
    last = (len(images) - 1) // 64
    datasets.disable_progress_bars()
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=[f"class{c}" for c in range(CLASSES)]),
        }
    )
    datasets.Dataset.from_dict(
        {
            "image": [{"bytes": data, "path": None} for data in images],
            "label": [i % CLASSES for i in range(len(images))],
        },
        features=features,
    ).save_to_disk(str(root / "hf"))
    return {
        "folder": ["data=folder", f"data.path={root / 'folder'}"],
        "webdataset": [
            "data=webdataset",
            f"data.urls={root / 'shards'}/train-{{000000..{last:06d}}}.tar",
            f"data.cache_dir={root / 'cache'}",
        ],
        "hf": ["data=hf", f"data.path={root / 'hf'}"],
    }


def build(setting: Setting, size: int, overrides: list[str]) -> tuple[Any, Any, str]:
    """``(training items, sample transform, view generator name)`` of one dataset."""
    from ssl_core.config import build_config
    from ssl_core.plugins import get_plugins

    plugins = get_plugins(blocked=set(OBSERVERS))
    args = ["method=byol", f"data.image_size={size}", f"trainer.device={setting.device}"]
    config, selection = build_config(
        [*args, "data.val_fraction=0.05", *overrides], plugins.registry
    )
    with plugins.running(config, [selection.dataset, selection.view_generator]), quiet():
        data = plugins.hook.ssl_build_dataset()
        transform = plugins.hook.ssl_sample_transform()
    return data.train, transform, selection.view_generator.name


def measure(setting: Setting) -> list[list[str]]:
    size = 64 if setting.quick else 224
    batch = 8 if setting.quick else 32
    batches = 2 if setting.quick else 8
    worker_counts = (0,) if setting.quick else (0, 1, 2)
    rounds = 1 if setting.quick else 2
    count = batch * (batches + max(worker_counts) + 3)
    model_setting = Setting(
        **{**setting.__dict__, "image_size": size, "batch_size": model_batch(setting, size)}
    )
    steps = 1 if setting.quick else 3

    def model_rate() -> float:
        log(f"data: the model's step at {size} px, batch {model_setting.batch_size}")
        return step_only_rate(model_setting, ["augment=albumentations"], steps)

    models = [model_rate()]
    with tempfile.TemporaryDirectory(prefix="ssl-bench-data-") as tmp:
        log(f"data: writing {count} JPEGs as a folder, tar shards and an HF dataset")
        overrides = write_datasets(Path(tmp), jpegs(count, size))
        built = {name: build(setting, size, overrides[name]) for name in DATASETS}
        reads = {}
        for name, (items, _, _) in built.items():
            sample = list(range(min(len(items), 32)))
            call = lambda items=items, sample=sample: [items[i] for i in sample]  # noqa: E731
            call()
            reads[name] = len(sample) / median(interleaved({name: call}, rounds=3, repeat=1)[name])
        rates: dict[tuple[str, int], list[float]] = {}
        for round_ in range(rounds):
            for workers in worker_counts:
                log(f"data: round {round_ + 1}/{rounds}, {workers} workers")
                for name, (items, transform, _) in built.items():
                    rate = loader_rate(
                        items, transform, batch=batch, workers=workers, batches=batches,
                        warmup=workers + 2,
                    )  # fmt: skip
                    rates.setdefault((name, workers), []).append(rate)
    if not setting.quick:
        models.append(model_rate())  # the machine's speed drifts: the mean of both blocks
    model = sum(models) / len(models)
    rows = []
    for (name, workers), values in rates.items():
        generator = built[name][2]
        rate = median(values)
        rows.append(
            [
                f"{size} px",
                name,
                f"{reads[name]:.0f}",
                f"{generator}, {workers} worker{'s' if workers != 1 else ''}",
                f"{rate:.0f}",
                f"{model:.{0 if model >= 10 else 1}f} (batch {model_setting.batch_size})",
                f"{rate / model:.1f}",
            ]
        )
    order = {name: i for i, name in enumerate(DATASETS)}
    rows.sort(key=lambda row: (order[row[1]], row[3]))
    return rows


def report(setting: Setting, rows: list[list[str]]) -> str:
    heading = (
        f"### Data: images per second each dataset delivers against the model's rate "
        f"({setting.backbone}, {setting.device}, precision {setting.precision}; JPEG inputs)\n\n"
    )
    return heading + table(
        [
            "size",
            "dataset",
            "read+decode img/s",
            "loader",
            "img/s",
            "model img/s",
            "data ÷ model",
        ],
        rows,
    )
