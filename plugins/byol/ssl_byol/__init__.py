"""BYOL for ssl_core: Bootstrap Your Own Latent (Grill et al. 2020, arXiv 2006.07733).

An online encoder, projector and predictor learn to predict the projection that a slowly
moving target (an exponential moving average of the online encoder and projector) gives for
the other view of the same image. This module is the plugin's entry point: it imports no torch,
the networks and loss are in :mod:`ssl_byol.model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ssl_core import hookimpl, option


@dataclass
class BYOLOptions:
    """The paper's recipe for 100–300 epochs: projector D→4096→256 and predictor 256→4096→256
    (Linear → BatchNorm → ReLU → Linear); τ_base 0.99 (0.996 for 1000 epochs)."""

    tau_base: float = option(
        0.99,
        "EMA decay of the target at step 0 (0.996 for 1000 epochs); rises to 1 by the last step",
        min=0.0,
        max=1.0,
    )
    proj_hidden_dim: int = option(4096, "hidden width of the projector", min=1)
    proj_dim: int = option(256, "output width of the projector and predictor", min=1)
    pred_hidden_dim: int = option(4096, "hidden width of the predictor", min=1)
    concat_views: bool = option(
        False,
        "one forward pass over both views (faster; BatchNorm statistics then span both views, "
        "unlike the paper)",
    )


class BYOL:
    """``method=byol``: L = 2 − 2·cos(p₁, z'₂) + 2 − 2·cos(p₂, z'₁), each term averaged over
    the batch, no gradient through the target z'; the core moves the target after each step
    (ξ ← τ·ξ + (1 − τ)·θ, τ from ``tau_base`` to 1 along a cosine)."""

    def __init__(self, options: BYOLOptions) -> None:
        self.options = options

    @hookimpl
    def ssl_build_heads(self, backbone: Any) -> Any:
        from .model import BYOLModel

        return BYOLModel(backbone, self.options)

    @hookimpl
    def ssl_compute_loss(self, model: Any, views: list[Any]) -> dict[str, Any]:
        from .model import byol_loss

        (p1, p2), (z1, z2) = model(views)
        return {"loss": byol_loss(p1, z2) + byol_loss(p2, z1)}


@hookimpl
def ssl_register_methods(register: Any) -> None:
    register(
        "byol",
        BYOL,
        options=BYOLOptions,
        views=2,
        description="Bootstrap Your Own Latent (Grill et al. 2020)",
    )
