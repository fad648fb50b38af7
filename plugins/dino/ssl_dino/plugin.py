"""Entry point of the DINO plugin: registers the method ``dino`` with ssl_core.

Imported whenever plugins are listed, so it imports no torch at module level; the model and
loss modules are loaded when a run selects ``method=dino``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ssl_core import UserError, hookimpl

from .options import DINOOptions

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from .model import DINOModel

#: Global crops: the teacher sees these; the student sees them and every local crop.
NUM_GLOBAL = 2

#: The reference code's defaults (Caron et al. 2021, arXiv 2104.14294, appendix and
#: ``main_dino.py``): multi-crop views (2 global + 8 local), AdamW with lr 5e-4 × batch/256,
#: weight decay 0.04, 10 warm-up epochs then cosine. Not expressible here: the weight decay's
#: cosine rise to 0.4 and gradient clipping at norm 3.
RECIPE: dict[str, Any] = {
    "augment.name": "multicrop",
    "optim.name": "adamw",
    "optim.lr": 5e-4,
    "optim.weight_decay": 0.04,
    "optim.momentum": 0.9,
    "optim.warmup_epochs": 10.0,
}


class ViewCountError(UserError, ValueError):
    """The view generator made views DINO cannot use."""


class DINORun:
    """The run plugin of ``method=dino``: builds the model, computes the loss, updates the teacher.

    Recipe of Caron et al. 2021 (arXiv 2104.14294, Algorithm 1): views ``[global 1, global 2,
    local 1, ...]``; the loss is the cross entropy between the centred, sharpened teacher
    output of each global crop and the student output of every other crop; then the centre
    moves towards the batch mean of the teacher outputs (gathered across processes). After
    each optimizer step the teacher moves as θt ← λ·θt + (1 − λ)·θs, λ rising from
    ``momentum_teacher`` to 1 along a cosine. The last layer of the head gets a zero gradient
    for the first ``freeze_last_layer_epochs`` epochs, and the teacher temperature warms up over
    ``warmup_teacher_temp_epochs``.

    Both count epochs, so they need the run's steps per epoch, which the step hooks do not
    give: it is read at :meth:`ssl_run_start`, and, since lifecycle hooks reach only the first
    of several processes, also worked out at the first target update as ``total_steps /
    epochs`` when ``trainer.max_steps`` does not cut the run short. Until then every step
    counts as epoch 0.
    """

    def __init__(self, options: DINOOptions, epochs: int = 1, max_steps: int = 0) -> None:
        self.options = options
        self.epochs = epochs
        self.max_steps = max_steps
        self.steps_per_epoch: int | None = None
        self._ema_pairs: tuple[Any, list[torch.Tensor], list[torch.Tensor]] | None = None

    def epoch_of(self, step: int) -> int:
        """The 0-based epoch of optimizer step ``step``."""
        return step // self.steps_per_epoch if self.steps_per_epoch else 0

    @hookimpl
    def ssl_run_start(self, run: Any) -> None:
        self.steps_per_epoch = int(run.steps_per_epoch)

    @hookimpl
    def ssl_build_heads(self, config: Any, backbone: torch.nn.Module) -> DINOModel:
        from .model import DINOModel

        return DINOModel(backbone, self.options)

    @hookimpl
    def ssl_compute_loss(
        self, model: DINOModel, views: list[torch.Tensor], step: int
    ) -> dict[str, torch.Tensor]:
        from .loss import dino_loss, teacher_temp_at, update_center_

        if len(views) < NUM_GLOBAL or views[0].shape != views[1].shape:
            sizes = ", ".join("x".join(map(str, v.shape[-2:])) for v in views) or "none"
            raise ViewCountError(
                f"method=dino needs {NUM_GLOBAL} global views of one size first, then any "
                f"number of local crops (augment=multicrop); the view generator made: {sizes}"
            )
        options = self.options
        epoch = self.epoch_of(step)
        # Under data-parallel training ``model`` is the wrapper; the model is its ``module``.
        inner = getattr(model, "module", model)
        # The prototypes stay put while the rest settles (the reference code drops their
        # gradient for the first epochs).
        inner.student_head.last_layer.frozen = epoch < options.freeze_last_layer_epochs
        temp = teacher_temp_at(
            epoch,
            options.warmup_teacher_temp,
            options.teacher_temp,
            options.warmup_teacher_temp_epochs,
        )
        student, teacher = model(views, NUM_GLOBAL)
        loss = dino_loss(student, teacher, inner.center, options.student_temp, temp)
        update_center_(inner.center, teacher, options.center_momentum)
        return {"loss": loss, "teacher_temp": loss.new_tensor(temp)}

    @hookimpl
    def ssl_update_target(self, model: DINOModel, step: int, total_steps: int) -> dict[str, float]:
        from ssl_core.methods.targets import cosine_tau, ema_update_

        if self.steps_per_epoch is None and not self.max_steps and total_steps >= self.epochs:
            self.steps_per_epoch = total_steps // self.epochs
        if self._ema_pairs is None or self._ema_pairs[0] is not model:
            self._ema_pairs = (model, model.target_parameters(), model.online_parameters())
        _, target, online = self._ema_pairs
        momentum = cosine_tau(step, total_steps, self.options.momentum_teacher)
        ema_update_(target, online, momentum)
        return {"momentum_teacher": momentum}


def make_run(config: Any) -> DINORun:
    """Factory of the ``dino`` method: the run plugin for the options in ``config.dino``."""
    trainer = config.get("trainer") if hasattr(config, "get") else None
    if trainer is None:
        return DINORun(DINOOptions.from_config(config))
    return DINORun(
        DINOOptions.from_config(config), int(trainer.epochs), int(trainer.get("max_steps", 0))
    )


@hookimpl
def ssl_register_methods(register: Callable[..., None]) -> None:
    register(
        "dino",
        make_run,
        options=DINOOptions,
        description="Self-distillation with no labels: EMA teacher, multi-crop (Caron et al. 2021)",
        defaults=RECIPE,
    )
