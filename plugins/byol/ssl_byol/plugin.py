"""Entry point of the BYOL plugin: registers the method ``byol`` with ssl_core.

Imported whenever plugins are listed, so it imports no torch at module level; the model, loss
and EMA modules are loaded when a run selects ``method=byol``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ssl_core import UserError, hookimpl

from .options import BYOLOptions

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from .model import BYOLModel

#: Views BYOL compares: one prediction per view regresses the other view's target projection.
NUM_VIEWS = 2


class ViewCountError(UserError, ValueError):
    """The view generator made a number of views BYOL cannot use."""


class BYOLRun:
    """The run plugin of ``method=byol``: builds the model, computes the loss, updates the target.

    Recipe of Grill et al. 2020 (arXiv 2006.07733): loss 2 − 2·cos(p₁, z'₂) + 2 − 2·cos(p₂, z'₁),
    each term averaged over the batch, stop-gradient on the target; after each optimizer step
    ξ ← τ·ξ + (1 − τ)·θ with τ rising from ``tau_base`` to 1 along a cosine over the run.
    """

    def __init__(self, options: BYOLOptions) -> None:
        self.options = options
        # (model, target params, online params), built at the first update: by then the
        # model sits on its training device, so the parameter objects are final.
        self._ema_pairs: tuple[Any, list[torch.Tensor], list[torch.Tensor]] | None = None

    @hookimpl
    def ssl_build_heads(self, config: Any, backbone: torch.nn.Module) -> BYOLModel:
        from .model import BYOLModel

        return BYOLModel(backbone, self.options)

    @hookimpl
    def ssl_compute_loss(
        self, model: BYOLModel, views: list[torch.Tensor], step: int
    ) -> dict[str, torch.Tensor]:
        from .loss import byol_loss

        if len(views) != NUM_VIEWS:
            raise ViewCountError(
                f"method=byol needs exactly {NUM_VIEWS} views per step; the view generator "
                f"made {len(views)}"
            )
        (p1, p2), (z1, z2) = model(views)
        return {"loss": byol_loss(p1, z2) + byol_loss(p2, z1)}

    @hookimpl
    def ssl_update_target(self, model: BYOLModel, step: int, total_steps: int) -> dict[str, float]:
        from ssl_core.methods.targets import cosine_tau, ema_update_

        if self._ema_pairs is None or self._ema_pairs[0] is not model:
            self._ema_pairs = (model, model.target_parameters(), model.online_parameters())
        _, target, online = self._ema_pairs
        tau = cosine_tau(step, total_steps, self.options.tau_base)
        ema_update_(target, online, tau)
        return {"tau": tau}


def make_run(config: Any) -> BYOLRun:
    """Factory of the ``byol`` method: the run plugin for the options in ``config.byol``."""
    return BYOLRun(BYOLOptions.from_config(config))


@hookimpl
def ssl_register_methods(register: Callable[..., None]) -> None:
    register(
        "byol",
        make_run,
        options=BYOLOptions,
        description="Bootstrap Your Own Latent (Grill et al. 2020)",
    )
