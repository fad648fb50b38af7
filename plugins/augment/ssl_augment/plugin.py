"""Entry point of the built-in view generators: registers ``kornia`` and ``albumentations``.

Imports nothing heavy: torch, kornia, albumentations and OpenCV load only when a factory runs.
"""

from __future__ import annotations

from typing import Any

from ssl_core import hookimpl

from .recipe import AugmentOptions


def kornia_views(options: AugmentOptions, config: Any) -> object:
    """Factory of the ``kornia`` generator's run plugin (see :mod:`ssl_augment.kornia_views`)."""
    from .kornia_views import KorniaViews

    return KorniaViews(options, int(config.data.image_size))


def albumentations_views(options: AugmentOptions, config: Any) -> object:
    """Factory of the ``albumentations`` generator's run plugin."""
    from .albumentations_views import AlbumentationsViews

    return AlbumentationsViews(options, int(config.data.image_size))


@hookimpl
def ssl_register_view_generators(register: Any) -> None:
    """Offer the two BYOL view generators; both take :class:`AugmentOptions`."""
    register(
        "kornia",
        kornia_views,
        options=AugmentOptions,
        views=2,
        description="BYOL views: crops cut in the DataLoader workers, colour and blur on the "
        "training device with Kornia, drawn per sample",
        auto_for=("cuda", "mps"),
    )
    register(
        "albumentations",
        albumentations_views,
        options=AugmentOptions,
        views=2,
        description="BYOL views made per image in the CPU DataLoader workers with albumentations",
        auto_for=("cpu",),
    )
