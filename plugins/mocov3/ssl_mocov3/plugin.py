"""Entry point of the MoCo v3 plugin: registers the method ``mocov3`` with ssl_core.

Imported whenever plugins are listed, so it imports no torch at module level; the model and
loss modules are loaded when a run selects ``method=mocov3``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ssl_core import UserError, hookimpl

from .options import MoCoV3Options

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from .model import MoCoV3Model

#: Views MoCo v3 compares: each view's queries look for the other view's keys.
NUM_VIEWS = 2

#: The reference code's ResNet-50 recipe for 100 epochs (Chen, Xie & He 2021, arXiv
#: 2104.02057): LARS, lr 0.6 × batch/256, weight decay 1e-6, 10 warm-up epochs then cosine;
#: BYOL's asymmetric augmentation, which is the core view generators' default.
RECIPE: dict[str, Any] = {
    "optim.name": "lars",
    "optim.lr": 0.6,
    "optim.weight_decay": 1e-6,
    "optim.warmup_epochs": 10.0,
}


class ViewCountError(UserError, ValueError):
    """The view generator made a number of views MoCo v3 cannot use."""


class MoCoV3Run:
    """The run plugin of ``method=mocov3``: builds the model, computes the loss, updates the keys.

    Recipe of Chen, Xie & He 2021 (arXiv 2104.02057): L = ctr(q₁, k₂) + ctr(q₂, k₁), InfoNCE
    against every key of the batch (gathered across processes); after each optimizer step the
    momentum encoder moves as ξ ← m·ξ + (1 − m)·θ with m rising from ``momentum`` to 1 along a
    cosine over the run.
    """

    def __init__(self, options: MoCoV3Options) -> None:
        self.options = options
        # (model, target params, online params), built at the first update: by then the
        # model sits on its training device, so the parameter objects are final.
        self._ema_pairs: tuple[Any, list[torch.Tensor], list[torch.Tensor]] | None = None

    @hookimpl
    def ssl_build_heads(self, config: Any, backbone: torch.nn.Module) -> MoCoV3Model:
        from .model import MoCoV3Model

        return MoCoV3Model(backbone, self.options)

    @hookimpl
    def ssl_compute_loss(
        self, model: MoCoV3Model, views: list[torch.Tensor], step: int
    ) -> dict[str, torch.Tensor]:
        from .loss import infonce_loss

        if len(views) != NUM_VIEWS:
            raise ViewCountError(
                f"method=mocov3 needs exactly {NUM_VIEWS} views per step; the view generator "
                f"made {len(views)}"
            )
        (q1, q2), (k1, k2) = model(views)
        tau = self.options.temperature
        return {"loss": infonce_loss(q1, k2, tau) + infonce_loss(q2, k1, tau)}

    @hookimpl
    def ssl_update_target(
        self, model: MoCoV3Model, step: int, total_steps: int
    ) -> dict[str, float]:
        from ssl_core.methods.targets import cosine_tau, ema_update_

        if self._ema_pairs is None or self._ema_pairs[0] is not model:
            self._ema_pairs = (model, model.target_parameters(), model.online_parameters())
        _, target, online = self._ema_pairs
        momentum = cosine_tau(step, total_steps, self.options.momentum)
        ema_update_(target, online, momentum)
        return {"momentum": momentum}


def make_run(config: Any) -> MoCoV3Run:
    """Factory of the ``mocov3`` method: the run plugin for the options in ``config.mocov3``."""
    return MoCoV3Run(MoCoV3Options.from_config(config))


@hookimpl
def ssl_register_methods(register: Callable[..., None]) -> None:
    register(
        "mocov3",
        make_run,
        options=MoCoV3Options,
        description="Momentum contrast v3: momentum encoder, InfoNCE (Chen, Xie & He 2021)",
        defaults=RECIPE,
    )
