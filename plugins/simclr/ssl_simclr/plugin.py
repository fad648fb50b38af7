"""Entry point of the SimCLR plugin: registers the method ``simclr`` with ssl_core.

Imported whenever plugins are listed, so it imports no torch at module level; the model and
loss modules are loaded when a run selects ``method=simclr``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ssl_core import UserError, hookimpl

from .options import SimCLROptions

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from .model import SimCLRModel

#: Views SimCLR contrasts: the two views of an image are each other's positive.
NUM_VIEWS = 2

#: The paper's ImageNet recipe (Chen et al. 2020, arXiv 2002.05709, §B.1, appendix A): LARS,
#: lr 0.3 × batch/256, weight decay 1e-6, 10 warm-up epochs then cosine; colour distortion of
#: strength 1 (jitter 0.8/0.8/0.8/0.2 with probability 0.8, grayscale 0.2), blur with
#: probability 0.5 on both views, no solarize.
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


class ViewCountError(UserError, ValueError):
    """The view generator made a number of views SimCLR cannot use."""


class SimCLRRun:
    """The run plugin of ``method=simclr``: builds the model and computes the loss.

    Recipe of Chen et al. 2020 (arXiv 2002.05709): NT-Xent over the 2N projections of the
    batch (gathered across processes). No target, so :meth:`ssl_update_target` does nothing.
    """

    def __init__(self, options: SimCLROptions) -> None:
        self.options = options

    @hookimpl
    def ssl_build_heads(self, config: Any, backbone: torch.nn.Module) -> SimCLRModel:
        from .model import SimCLRModel

        return SimCLRModel(backbone, self.options)

    @hookimpl
    def ssl_compute_loss(
        self, model: SimCLRModel, views: list[torch.Tensor], step: int
    ) -> dict[str, torch.Tensor]:
        import torch

        from .loss import nt_xent_loss

        if len(views) != NUM_VIEWS:
            raise ViewCountError(
                f"method=simclr needs exactly {NUM_VIEWS} views per step; the view generator "
                f"made {len(views)}"
            )
        # One forward over both views, as the reference does: BatchNorm sees all 2N images.
        z1, z2 = model(torch.cat(views)).chunk(NUM_VIEWS)
        return {"loss": nt_xent_loss(z1, z2, self.options.temperature)}

    @hookimpl
    def ssl_update_target(
        self, model: SimCLRModel, step: int, total_steps: int
    ) -> dict[str, float]:
        return {}


def make_run(config: Any) -> SimCLRRun:
    """Factory of the ``simclr`` method: the run plugin for the options in ``config.simclr``."""
    return SimCLRRun(SimCLROptions.from_config(config))


@hookimpl
def ssl_register_methods(register: Callable[..., None]) -> None:
    register(
        "simclr",
        make_run,
        options=SimCLROptions,
        description="Contrastive learning with the NT-Xent loss (Chen et al. 2020)",
        defaults=RECIPE,
    )
