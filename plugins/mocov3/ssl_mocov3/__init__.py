"""MoCo v3 for ssl_core: An Empirical Study of Training Self-Supervised Vision Transformers
(Chen, Xie & He 2021, arXiv 2104.02057).

A query encoder (backbone, projector, predictor) and a momentum encoder (an exponential moving
average of backbone and projector) embed two views; an InfoNCE loss asks each query to pick
the key of its own image among the keys of the whole batch. This module is the plugin's entry
point: it imports no torch (the networks and loss are in :mod:`ssl_mocov3.model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ssl_core import hookimpl, option

#: The reference code's ResNet-50 recipe for 100 epochs: LARS, lr 0.6 × batch/256, weight
#: decay 1e-6, 10 warm-up epochs then cosine; BYOL's asymmetric augmentation (the default).
RECIPE: dict[str, Any] = {
    "optim.name": "lars",
    "optim.lr": 0.6,
    "optim.weight_decay": 1e-6,
    "optim.warmup_epochs": 10.0,
}


@dataclass
class MoCoV3Options:
    """The reference code's ResNet-50 recipe: projector of 2 layers D→4096→256 (its output
    BatchNorm without affine parameters), predictor 256→4096→256, every linear layer without
    bias; temperature τ = 1.0 (0.2 for ViT, whose projector has 3 layers); momentum m = 0.99
    raised to 1 along a cosine."""

    temperature: float = option(1.0, "InfoNCE temperature tau (0.2 for ViT)", min=1e-6)
    momentum: float = option(
        0.99,
        "momentum m of the key encoder at step 0; rises to 1 by the last step",
        min=0.0,
        max=1.0,
    )
    proj_layers: int = option(2, "linear layers of the projector (2 for ResNet, 3 for ViT)", min=1)
    proj_hidden_dim: int = option(4096, "hidden width of the projector", min=1)
    proj_dim: int = option(256, "output width of the projector and predictor", min=1)
    pred_hidden_dim: int = option(4096, "hidden width of the predictor", min=1)


class MoCoV3:
    """``method=mocov3``: L = ctr(q₁, k₂) + ctr(q₂, k₁), InfoNCE against every key of the
    batch (gathered across processes); the core moves the momentum encoder after each step."""

    def __init__(self, options: MoCoV3Options) -> None:
        self.options = options

    @hookimpl
    def ssl_build_heads(self, backbone: Any) -> Any:
        from .model import MoCoV3Model

        return MoCoV3Model(backbone, self.options)

    @hookimpl
    def ssl_compute_loss(self, model: Any, views: list[Any]) -> dict[str, Any]:
        from .model import infonce_loss

        (q1, q2), (k1, k2) = model(views)
        tau = self.options.temperature
        return {"loss": infonce_loss(q1, k2, tau) + infonce_loss(q2, k1, tau)}


@hookimpl
def ssl_register_methods(register: Any) -> None:
    register(
        "mocov3",
        MoCoV3,
        options=MoCoV3Options,
        views=2,
        description="Momentum contrast v3: momentum encoder, InfoNCE (Chen, Xie & He 2021)",
        defaults=RECIPE,
    )
