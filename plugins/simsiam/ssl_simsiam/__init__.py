"""SimSiam for ssl_core: Exploring Simple Siamese Representation Learning (Chen & He 2021,
arXiv 2011.10566).

Two views go through the same encoder and projector; a predictor on one side regresses the
other side's projection, held fixed by a stop-gradient. No target network, no negative pair.
This module is the plugin's entry point: it imports no torch (the networks and loss are in
:mod:`ssl_simsiam.model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ssl_core import hookimpl, option

#: The paper's optimizer and augmentation (§4.1, appendix A): SGD, lr 0.05 × batch/256,
#: momentum 0.9, weight decay 1e-4, cosine decay without warm-up; MoCo v2's augmentation (crop
#: area 0.2–1, colour jitter 0.4/0.4/0.4/0.1, blur with probability 0.5 on both views).
RECIPE: dict[str, Any] = {
    "optim.name": "sgd",
    "optim.lr": 0.05,
    "optim.weight_decay": 1e-4,
    "optim.momentum": 0.9,
    "optim.warmup_epochs": 0.0,
    "augment.crop_scale_min": 0.2,
    "augment.saturation": 0.4,
    "augment.blur_prob_view1": 0.5,
    "augment.blur_prob_view2": 0.5,
    "augment.solarize_prob_view2": 0.0,
}


@dataclass
class SimSiamOptions:
    """The paper's ResNet-50 heads (§4, appendix A): projector D→2048→2048→2048, BatchNorm
    after every layer (ReLU on the hidden ones); predictor 2048→512→2048."""

    proj_hidden_dim: int = option(2048, "hidden width of the projector", min=1)
    proj_dim: int = option(2048, "output width of the projector and predictor", min=1)
    pred_hidden_dim: int = option(512, "hidden (bottleneck) width of the predictor", min=1)
    fixed_predictor_lr: bool = option(
        True, "keep the predictor's learning rate fixed while the rest decays (the paper's)"
    )


class SimSiam:
    """``method=simsiam``: L = D(p₁, z₂)/2 + D(p₂, z₁)/2, D(p, z) = −cos(p, stopgrad(z))."""

    def __init__(self, options: SimSiamOptions) -> None:
        self.options = options

    @hookimpl
    def ssl_build_heads(self, backbone: Any) -> Any:
        from .model import SimSiamModel

        return SimSiamModel(backbone, self.options)

    @hookimpl
    def ssl_param_groups(self, model: Any) -> Any:
        from ssl_core import param_groups

        # §4.1: "fix lr for predictor" works better than decaying it with the rest. The
        # reference's SGD decays every parameter, biases and BatchNorm ones included.
        fixed = {"predictor": {"fixed_lr": True}} if self.options.fixed_predictor_lr else {}
        return param_groups(model, fixed, split_no_decay=False)

    @hookimpl
    def ssl_compute_loss(self, model: Any, views: list[Any]) -> dict[str, Any]:
        from .model import simsiam_loss

        (p1, p2), (z1, z2) = model(views)
        return {"loss": simsiam_loss(p1, p2, z1, z2)}


@hookimpl
def ssl_register_methods(register: Any) -> None:
    register(
        "simsiam",
        SimSiam,
        options=SimSiamOptions,
        views=2,
        description="Simple Siamese networks with stop-gradient, no target (Chen & He 2021)",
        defaults=RECIPE,
    )
