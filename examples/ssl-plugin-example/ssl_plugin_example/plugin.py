"""Entry point of the example plugin: registers ``barlow_twins``, ``small_cnn``, ``crop_flip``.

ssl_core imports this module whenever plugins are listed (``ssl plugins``, ``ssl --help``), so
it imports no torch: each factory loads its component's module when a run selects it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ssl_core import hookimpl

from .options import BarlowTwinsOptions, CropFlipOptions, SmallCNNOptions

#: Barlow Twins' optimizer (Zbontar et al. 2021, §4): LARS, lr 0.2 × batch/256 for the
#: weights, weight decay 1.5e-6, 10 warm-up epochs then cosine. A method's defaults apply
#: unless the user sets the key.
BARLOW_TWINS_RECIPE: dict[str, Any] = {
    "optim.name": "lars",
    "optim.lr": 0.2,
    "optim.weight_decay": 1.5e-6,
    "optim.warmup_epochs": 10.0,
}


def barlow_twins(config: Any) -> object:
    """Factory of the ``barlow_twins`` method: its run plugin for this run's config."""
    from .barlow_twins import BarlowTwinsRun

    return BarlowTwinsRun(BarlowTwinsOptions.from_config(config))


def small_cnn(config: Any) -> object:
    """Factory of the ``small_cnn`` backbone."""
    from .small_cnn import SmallCNNRun

    return SmallCNNRun(SmallCNNOptions.from_config(config))


def crop_flip(config: Any) -> object:
    """Factory of the ``crop_flip`` view generator."""
    from .views import CropFlipViews

    return CropFlipViews(CropFlipOptions.from_config(config), int(config.data.image_size))


@hookimpl
def ssl_register_methods(register: Callable[..., None]) -> None:
    register(
        "barlow_twins",
        barlow_twins,
        options=BarlowTwinsOptions,
        description="Barlow Twins: redundancy reduction (Zbontar et al. 2021)",
        defaults=BARLOW_TWINS_RECIPE,
    )


@hookimpl
def ssl_register_backbones(register: Callable[..., None]) -> None:
    register(
        "small_cnn",
        small_cnn,
        options=SmallCNNOptions,
        description="four conv blocks and a global pool, for small images",
    )


@hookimpl
def ssl_register_view_generators(register: Callable[..., None]) -> None:
    register(
        "crop_flip",
        crop_flip,
        options=CropFlipOptions,
        description="random resized crop, flip, brightness/contrast, grayscale; on the device",
    )
