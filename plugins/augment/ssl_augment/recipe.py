"""The BYOL view recipe: the options both view generators share, and what each view draws.

Defaults follow the BYOL paper's two asymmetric pipelines (Grill et al., 2020, table 6)::

    op                                                 view 1   view 2
    random resized crop, scale 0.08-1, ratio 3/4-4/3   1.0      1.0
    horizontal flip                                    0.5      0.5
    colour jitter (0.4, 0.4, 0.2, 0.1), random order   0.8      0.8
    grayscale                                          0.2      0.2
    gaussian blur, sigma in [0.1, 2], kernel ~10% of S 1.0      0.1
    solarize (threshold 0.5)                           0.0      0.2

This module imports nothing heavy: the plugin module loads it to register the options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ssl_core import ConfigError, option

#: Aspect-ratio range (width / height) of the random resized crop, as in the reference.
CROP_RATIO: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)


@dataclass
class AugmentOptions:
    """Options of the BYOL view pipelines (config group ``augment``)."""

    crop_scale_min: float = option(
        0.08, "smallest crop area, as a fraction of the image", min=0.01, max=1.0
    )
    crop_scale_max: float = option(
        1.0, "largest crop area, as a fraction of the image", min=0.01, max=1.0
    )
    flip_prob: float = option(0.5, "probability of a horizontal flip", min=0.0, max=1.0)
    jitter_prob: float = option(0.8, "probability of colour jitter", min=0.0, max=1.0)
    brightness: float = option(0.4, "brightness jitter: factor in [1-x, 1+x]", min=0.0)
    contrast: float = option(0.4, "contrast jitter: factor in [1-x, 1+x]", min=0.0)
    saturation: float = option(0.2, "saturation jitter: factor in [1-x, 1+x]", min=0.0)
    hue: float = option(0.1, "hue jitter: shift in [-x, x] turns", min=0.0, max=0.5)
    grayscale_prob: float = option(0.2, "probability of grayscale", min=0.0, max=1.0)
    blur_prob_view1: float = option(1.0, "probability of gaussian blur, view 1", min=0.0, max=1.0)
    blur_prob_view2: float = option(0.1, "probability of gaussian blur, view 2", min=0.0, max=1.0)
    blur_sigma_min: float = option(0.1, "smallest blur sigma, in pixels", min=0.01, max=100.0)
    blur_sigma_max: float = option(2.0, "largest blur sigma, in pixels", min=0.01, max=100.0)
    solarize_prob_view1: float = option(0.0, "probability of solarize, view 1", min=0.0, max=1.0)
    solarize_prob_view2: float = option(0.2, "probability of solarize, view 2", min=0.0, max=1.0)

    def __post_init__(self) -> None:
        """An inverted range is a :class:`ssl_core.ConfigError`; single-value bounds are
        checked by the core."""
        for low, high in (
            ("crop_scale_min", "crop_scale_max"),
            ("blur_sigma_min", "blur_sigma_max"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ConfigError(
                    f"augment.{low}={getattr(self, low)} is larger than "
                    f"augment.{high}={getattr(self, high)}; the minimum must be <= the maximum"
                )

    def views(self) -> tuple[ViewRecipe, ViewRecipe]:
        """The two views' draws: shared crop/flip/colour, asymmetric blur and solarize."""
        return (
            ViewRecipe(self.blur_prob_view1, self.solarize_prob_view1),
            ViewRecipe(self.blur_prob_view2, self.solarize_prob_view2),
        )


@dataclass(frozen=True)
class ViewRecipe:
    """What differs between the two views: blur and solarize probabilities."""

    blur_prob: float
    solarize_prob: float


def blur_kernel_size(image_size: int) -> int:
    """Blur kernel side for ``image_size`` pixels: about 10% of it, odd, at least 3."""
    size = round(0.1 * image_size)
    return max(3, size if size % 2 == 1 else size + 1)


def as_rgb(image: Any) -> Any:
    """``image`` as a ``uint8`` ``HxWx3`` numpy array (grey gets 3 channels, alpha is dropped).

    Raises ``ValueError`` for anything else: the sample transforms take 8-bit images only.
    """
    import numpy as np

    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxWx3 image, got shape {tuple(array.shape)}")
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    return array[:, :, :3]
