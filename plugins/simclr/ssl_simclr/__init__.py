"""SimCLR for ssl_core: A Simple Framework for Contrastive Learning of Visual Representations
(Chen, Kornblith, Norouzi & Hinton 2020, arXiv 2002.05709).

Two views of each image go through one encoder and projection head; the NT-Xent loss pulls
the two projections of an image together and pushes them away from the 2(N−1) projections of
the other images in the batch. This module is the plugin's entry point: it imports no torch
(the network and loss are in :mod:`ssl_simclr.model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ssl_core import hookimpl, option

#: The paper's ImageNet recipe (§B.1, appendix A): LARS, lr 0.3 × batch/256, weight decay
#: 1e-6, 10 warm-up epochs then cosine; colour distortion of strength 1 (jitter 0.8/0.8/0.8/0.2
#: with probability 0.8, grayscale 0.2), blur with probability 0.5 on both views, no solarize.
RECIPE: dict[str, Any] = {
    "optim.name": "lars",
    "optim.lr": 0.3,
    "optim.weight_decay": 1e-6,
    "optim.warmup_epochs": 10.0,
    "augment.brightness": 0.8,
    "augment.contrast": 0.8,
    "augment.saturation": 0.8,
    "augment.hue": 0.2,
    "augment.blur_prob_view1": 0.5,
    "augment.blur_prob_view2": 0.5,
    "augment.solarize_prob_view2": 0.0,
}


@dataclass
class SimCLROptions:
    """The paper's head g = W₂·ReLU(BN(W₁·h)), 2048 wide, 128-d output; τ = 0.1 (0.5 is
    better on CIFAR-10 with small batches, appendix B.9)."""

    temperature: float = option(0.1, "NT-Xent temperature tau (0.5 on CIFAR-size data)", min=1e-6)
    proj_hidden_dim: int = option(2048, "hidden width of the projection head", min=1)
    proj_dim: int = option(128, "output width of the projection head", min=1)


class SimCLR:
    """``method=simclr``: NT-Xent over the 2N projections of the batch (gathered across
    processes); no target network."""

    def __init__(self, options: SimCLROptions) -> None:
        self.options = options

    @hookimpl
    def ssl_build_heads(self, backbone: Any) -> Any:
        from .model import SimCLRModel

        return SimCLRModel(backbone, self.options)

    @hookimpl
    def ssl_compute_loss(self, model: Any, views: list[Any]) -> dict[str, Any]:
        from .model import nt_xent_loss

        z1, z2 = model(views)
        return {"loss": nt_xent_loss(z1, z2, self.options.temperature)}


@hookimpl
def ssl_register_methods(register: Any) -> None:
    register(
        "simclr",
        SimCLR,
        options=SimCLROptions,
        views=2,
        description="Contrastive learning with the NT-Xent loss (Chen et al. 2020)",
        defaults=RECIPE,
    )
