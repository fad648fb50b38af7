"""Folders of images for the tests of ``data=folder``: build it as the engine does, date folders."""

from __future__ import annotations

import os
import time
import typing
from pathlib import Path

from omegaconf import OmegaConf
from PIL import Image
from ssl_datasets import plugin

from ssl_core.config import component_options
from ssl_core.registry import Registry


def build(seed: int = 0, **data: object) -> typing.Any:
    """``ssl_build_dataset`` of ``data=folder`` with ``data``, as the engine calls it."""
    registry = Registry()
    plugin.ssl_register_datasets(register=registry.registrar("dataset", "datasets"))
    component = registry.get("dataset", "folder")
    defaults = OmegaConf.to_container(OmegaConf.structured(component.options))
    config = OmegaConf.create(
        {
            "data": {"name": "folder", "image_size": 16, **defaults, **data},
            "trainer": {"seed": seed},
        }
    )
    return component.make(config, component_options(component, config)).ssl_build_dataset()


def save_png(path: Path, shade: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade, 0, 0)).save(path)


def save_classes(root: Path, classes: int = 3, per_class: int = 4) -> None:
    for c in range(classes):
        for i in range(per_class):
            save_png(root / f"class{c}" / f"{i}.png", shade=10 * c + i)


def settle(*paths: Path) -> None:
    """Date every folder under ``paths`` a minute back, as a folder not written just now is.

    An index is saved only when the folders it depends on have not changed for
    ``index.SETTLE_S`` seconds (a change within the same timestamp tick would go unseen).
    """
    old = time.time() - 60
    for path in paths:
        for where, _, _ in os.walk(path):
            os.utime(where, (old, old))
        os.utime(path, (old, old))


def cache_files() -> list[Path]:
    folder_ = Path(os.environ["SSL_CORE_CACHE"]) / "folder-index"
    return sorted(folder_.glob("*.npz")) if folder_.is_dir() else []


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]
