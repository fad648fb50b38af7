"""The options of the three components; imported when plugins are listed, so no torch here."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ssl_core import option


def _from_group(cls: type, config: Any, group: str) -> Any:
    """``cls`` with the values found in ``config[group]``; keys left out keep their defaults."""
    node = config.get(group) if hasattr(config, "get") else None
    if node is None:
        return cls()
    return cls(**{f.name: node[f.name] for f in fields(cls) if f.name in node})


@dataclass
class BarlowTwinsOptions:
    """Barlow Twins' projector and λ (Zbontar et al. 2021, arXiv 2103.03230, §2 and §4).

    The paper's recipe: projector of 3 linear layers D→8192→8192→8192, the two hidden ones
    followed by BatchNorm and ReLU; λ = 0.0051 weighs the redundancy-reduction term.
    """

    lambd: float = option(0.0051, "weight lambda of the off-diagonal (redundancy) term", min=0.0)
    proj_hidden_dim: int = option(8192, "hidden width of the projector", min=1)
    proj_dim: int = option(8192, "output width of the projector", min=1)

    @classmethod
    def from_config(cls, config: Any) -> BarlowTwinsOptions:
        return _from_group(cls, config, "barlow_twins")


@dataclass
class SmallCNNOptions:
    """Options of the ``small_cnn`` backbone; they join the ``backbone`` group."""

    width: int = option(32, "channels of the first block; each of the 3 others doubles it", min=1)

    @classmethod
    def from_config(cls, config: Any) -> SmallCNNOptions:
        return _from_group(cls, config, "backbone")


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

    @classmethod
    def from_config(cls, config: Any) -> CropFlipOptions:
        return _from_group(cls, config, "augment")
