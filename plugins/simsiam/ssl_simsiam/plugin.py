"""Entry point of the SimSiam plugin: registers the method ``simsiam`` with ssl_core.

Imported whenever plugins are listed, so it imports no torch at module level; the model and
loss modules are loaded when a run selects ``method=simsiam``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ssl_core import UserError, hookimpl

from .options import SimSiamOptions

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from .model import SimSiamModel

#: Views SimSiam compares: each view's prediction regresses the other's projection.
NUM_VIEWS = 2

#: The paper's optimizer and augmentation (Chen & He 2021, arXiv 2011.10566, §4.1 and
#: appendix A): SGD, lr 0.05 × batch/256, momentum 0.9, weight decay 1e-4, cosine decay without
#: warm-up; MoCo v2's augmentation (crop area 0.2–1, colour jitter 0.4/0.4/0.4/0.1, blur with
#: probability 0.5 on both views, no solarize).
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


class ViewCountError(UserError, ValueError):
    """The view generator made a number of views SimSiam cannot use."""


class SimSiamRun:
    """The run plugin of ``method=simsiam``: builds the model and computes the loss.

    Recipe of Chen & He 2021 (arXiv 2011.10566): L = D(p₁, z₂)/2 + D(p₂, z₁)/2 with
    D(p, z) = −cos(p, stopgrad(z)); no target, so :meth:`ssl_update_target` does nothing. The
    paper keeps the predictor's learning rate fixed while the rest decays; the core's schedule
    applies to every parameter, so here the predictor decays too.
    """

    def __init__(self, options: SimSiamOptions) -> None:
        self.options = options

    @hookimpl
    def ssl_build_heads(self, config: Any, backbone: torch.nn.Module) -> SimSiamModel:
        from .model import SimSiamModel

        return SimSiamModel(backbone, self.options)

    @hookimpl
    def ssl_compute_loss(
        self, model: SimSiamModel, views: list[torch.Tensor], step: int
    ) -> dict[str, torch.Tensor]:
        from .loss import simsiam_loss

        if len(views) != NUM_VIEWS:
            raise ViewCountError(
                f"method=simsiam needs exactly {NUM_VIEWS} views per step; the view generator "
                f"made {len(views)}"
            )
        p1, z1 = model(views[0])
        p2, z2 = model(views[1])
        return {"loss": simsiam_loss(p1, p2, z1, z2)}

    @hookimpl
    def ssl_update_target(
        self, model: SimSiamModel, step: int, total_steps: int
    ) -> dict[str, float]:
        return {}


def make_run(config: Any) -> SimSiamRun:
    """Factory of the ``simsiam`` method: the run plugin for the options in ``config.simsiam``."""
    return SimSiamRun(SimSiamOptions.from_config(config))


@hookimpl
def ssl_register_methods(register: Callable[..., None]) -> None:
    register(
        "simsiam",
        make_run,
        options=SimSiamOptions,
        description="Simple Siamese networks with stop-gradient, no target (Chen & He 2021)",
        defaults=RECIPE,
    )
