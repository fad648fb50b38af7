"""Entry point of the example plugin: registers ``barlow_twins``, ``small_cnn``, ``crop_flip``.

ssl_core imports this module whenever plugins are listed (``ssl plugins``, ``ssl --help``), so
it imports no torch: each factory loads its component's module when a run selects it. The
options dataclasses live here too: ssl_core reads them to build the config groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ssl_core import hookimpl, option

#: Barlow Twins' optimizer (Zbontar et al. 2021, §4): LARS, lr 0.2 × batch/256 for the
#: weights, weight decay 1.5e-6, 10 warm-up epochs then cosine. A method's defaults apply
#: unless the user sets the key.
BARLOW_TWINS_RECIPE: dict[str, Any] = {
    "optim.name": "lars",
    "optim.lr": 0.2,
    "optim.weight_decay": 1.5e-6,
    "optim.warmup_epochs": 10.0,
}


@dataclass
class BarlowTwinsOptions:
    """Barlow Twins' projector, λ and bias learning rate (Zbontar et al. 2021, §2 and §4): a
    projector of 3 linear layers D→8192→8192→8192, λ = 0.0051, and biases and normalization
    parameters trained at 0.0048 where the weights get 0.2 (a factor of 0.024)."""

    lambd: float = option(0.0051, "weight lambda of the off-diagonal (redundancy) term", min=0.0)
    proj_hidden_dim: int = option(8192, "hidden width of the projector", min=1)
    proj_dim: int = option(8192, "output width of the projector", min=1)
    bias_lr_scale: float = option(
        0.024,
        "learning rate of biases and normalization parameters, relative to the weights'",
        min=0.0,
    )


@dataclass
class SmallCNNOptions:
    """Options of the ``small_cnn`` backbone; they join the ``backbone`` group."""

    width: int = option(32, "channels of the first block; each of the 3 others doubles it", min=1)


@dataclass
class CropFlipOptions:
    """Options of the ``crop_flip`` views; they join the ``augment`` group."""

    crop_scale_min: float = option(
        0.2, "smallest crop area, as a fraction of the image", min=0.01, max=1.0
    )
    flip_prob: float = option(0.5, "probability of a horizontal flip", min=0.0, max=1.0)
    brightness: float = option(0.4, "brightness jitter: factor in [1-x, 1+x]", min=0.0, max=1.0)
    contrast: float = option(0.4, "contrast jitter: factor in [1-x, 1+x]", min=0.0, max=1.0)
    grayscale_prob: float = option(0.2, "probability of grayscale", min=0.0, max=1.0)


def barlow_twins(options: BarlowTwinsOptions) -> object:
    """Factory of the ``barlow_twins`` method: its run plugin, given the run's options."""
    from .barlow_twins import BarlowTwins

    return BarlowTwins(options)


def small_cnn(options: SmallCNNOptions) -> object:
    """Factory of the ``small_cnn`` backbone."""
    from .small_cnn import SmallCNNBackbone

    return SmallCNNBackbone(options)


def crop_flip(options: CropFlipOptions, config: Any) -> object:
    """Factory of the ``crop_flip`` view generator (it also needs the view size)."""
    from .views import CropFlipViews

    return CropFlipViews(options, int(config.data.image_size))


@hookimpl
def ssl_register_methods(register: Any) -> None:
    register(
        "barlow_twins",
        barlow_twins,
        options=BarlowTwinsOptions,
        views=2,
        description="Barlow Twins: redundancy reduction (Zbontar et al. 2021)",
        defaults=BARLOW_TWINS_RECIPE,
    )


@hookimpl
def ssl_register_backbones(register: Any) -> None:
    register(
        "small_cnn",
        small_cnn,
        options=SmallCNNOptions,
        description="four conv blocks and a global pool, for small images",
    )


@hookimpl
def ssl_register_view_generators(register: Any) -> None:
    register(
        "crop_flip",
        crop_flip,
        options=CropFlipOptions,
        views=2,
        description="random resized crop, flip, brightness/contrast, grayscale; on the device",
    )
