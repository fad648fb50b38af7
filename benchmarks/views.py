"""Views: view-pair throughput of each view generator against the model's consumption rate.

``kornia`` splits the work: the DataLoader workers cut each view's random resized crop and
flip from the full image on ``uint8`` (its sample transform), and ``ssl_make_views`` runs the
photometric ops on the training device. ``albumentations`` makes the whole views per image in
the workers. Each generator's sample transform is timed in this process (one core) and
through the engine's training loader (seeding, collation, worker processes) with 1 and with
N workers; ``kornia``'s device part on a device batch of the crops its transform makes; and on
a CPU both of its parts one after the other in this process, as a run with no workers makes
them. The source images are ``S·8/7`` pixels square (256 px for 224-pixel views), uint8 noise.

The model's rate is the engine's step alone at the same size (:func:`step.step_only_rate`);
``views ÷ model`` above 1 means view generation keeps up with training. On a CPU the two
compete for the same cores, so the ratio says how much of the machine views would take.
"""

from __future__ import annotations

import os
from typing import Any

from . import common
from .common import OBSERVERS, Setting, interleaved, log, median, table
from .step import step_only_rate


def _config(size: int, generator: str) -> Any:
    from ssl_core.config import build_config, component_options
    from ssl_core.plugins import get_plugins

    plugins = get_plugins(blocked=set(OBSERVERS))
    config, selection = build_config(
        ["method=byol", f"augment={generator}", f"data.image_size={size}"], plugins.registry
    )
    component = selection.view_generator
    return config, component.make(config, component_options(component, config))


def source_images(size: int, count: int) -> list[tuple[Any, int]]:
    import numpy as np

    side = round(size * 8 / 7)
    rng = np.random.default_rng(size)
    return [(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), 0) for _ in range(count)]


def device_batch(views: Any, size: int, batch: int, device: str) -> dict[str, Any]:
    """A collated batch of ``views``' own sample transform, moved to ``device``."""
    from torch.utils.data import default_collate

    from ssl_core.data.loader import to_device

    transform = views.ssl_sample_transform()
    samples = [transform(image) for image, _ in source_images(size, batch)]
    return to_device(default_collate(samples), device)


def device_rate(size: int, batch: int, device: str, rounds: int) -> float:
    """Pairs per second of ``kornia``'s ``ssl_make_views`` on a device batch of its crops."""
    _, views = _config(size, "kornia")
    data = device_batch(views, size, batch, device)
    call = lambda: views.ssl_make_views(batch=data)  # noqa: E731
    call()
    times = interleaved({"kornia": call}, rounds=rounds, repeat=1, device=device)
    return batch / median(times["kornia"])


def transform_rate(generator: str, size: int, batch: int, rounds: int) -> float:
    """Pairs per second of the generator's sample transform in this process (one core)."""
    _, views = _config(size, generator)
    transform = views.ssl_sample_transform()
    images = [image for image, _ in source_images(size, batch)]

    def call() -> None:
        for image in images:
            transform(image)

    call()
    times = interleaved({generator: call}, rounds=rounds, repeat=1)
    return batch / median(times[generator])


def in_process_rate(size: int, batch: int, rounds: int) -> float:
    """Pairs per second of ``kornia``'s two parts one after the other in this process (CPU)."""
    from torch.utils.data import default_collate

    _, views = _config(size, "kornia")
    transform = views.ssl_sample_transform()
    images = [image for image, _ in source_images(size, batch)]
    call = lambda: views.ssl_make_views(  # noqa: E731
        batch=default_collate([transform(image) for image in images])
    )
    call()
    times = interleaved({"kornia": call}, rounds=rounds, repeat=1)
    return batch / median(times["kornia"])


def loader_rate(
    generator: str, size: int, batch: int, workers: int, batches: int, pin_memory: bool
) -> float:
    """Pairs per second out of the engine's training loader with ``workers`` processes."""
    config, views = _config(size, generator)
    items = source_images(size, batch * (batches + 2 * workers + 2))
    return common.loader_rate(
        items,
        views.ssl_sample_transform(),
        batch=batch,
        workers=workers,
        batches=batches,
        warmup=workers + 1,
        pin_memory=pin_memory,
    )


def model_batch(setting: Setting, size: int) -> int:
    """The batch the model is timed at: the setting's, smaller for big images on a CPU."""
    if setting.device != "cpu":
        return setting.batch_size
    return max(8, min(setting.batch_size, setting.batch_size * 32 // size))


def measure(setting: Setting, sizes: tuple[int, ...]) -> list[list[str]]:
    cores = len(os.sched_getaffinity(0))
    worker_counts = sorted({1, min(cores, 8)})
    rounds = 2 if setting.quick else 3
    rows = []
    for size in sizes:
        batch = model_batch(setting, size)
        log(f"views: {size} px, model at batch {batch}")
        model_setting = Setting(**{**setting.__dict__, "image_size": size, "batch_size": batch})
        model = step_only_rate(model_setting, ["augment=albumentations"], 1 if setting.quick else 2)
        view_batch = 16 if setting.quick else 64
        pin = setting.device.startswith("cuda")
        figures = [
            (
                "kornia",
                f"{setting.device}, in the training process",
                device_rate(size, view_batch, setting.device, rounds),
            )
        ]
        if setting.device == "cpu":
            figures.append(
                (
                    "kornia",
                    "crops then device part, in this process",
                    in_process_rate(size, view_batch, rounds),
                )
            )
        for generator in ("kornia", "albumentations"):
            part = "crops" if generator == "kornia" else "views"
            figures.append(
                (
                    generator,
                    f"{part}, 1 core, in this process",
                    transform_rate(generator, size, view_batch, rounds),
                )
            )
            for workers in worker_counts:
                figures.append(
                    (
                        generator,
                        f"{part}, training loader, {workers} worker{'s' if workers > 1 else ''}",
                        loader_rate(
                            generator,
                            size,
                            view_batch,
                            workers,
                            batches=2 if setting.quick else 6,
                            pin_memory=pin,
                        ),
                    )
                )
        for generator, where, pairs in figures:
            rows.append(
                [
                    f"{size} px",
                    generator,
                    where,
                    f"{pairs:.0f}",
                    f"{model:.0f} (batch {batch})",
                    f"{pairs / model:.1f}",
                ]
            )
    return rows


def report(setting: Setting, rows: list[list[str]]) -> str:
    heading = (
        f"### Views: view pairs per second against the model's rate "
        f"({setting.backbone}, {setting.device}, precision {setting.precision})\n\n"
    )
    return heading + table(
        ["size", "generator", "where", "pairs/s", "model img/s", "views ÷ model"], rows
    )
