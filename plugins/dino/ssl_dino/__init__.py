"""DINO for ssl_core: Emerging Properties in Self-Supervised Vision Transformers (Caron et al.
2021, arXiv 2104.14294), self-distillation with no labels.

A student network (backbone and head) is trained to match, on every crop of an image, the
output distribution a teacher (an exponential moving average of the student) gives for the
*global* crops of the same image. Centering and sharpening of the teacher's output prevent
collapse. This module is the plugin's entry point: it imports no torch (the networks and loss
are in :mod:`ssl_dino.model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ssl_core import UserError, hookimpl, option

#: The reference code's defaults (appendix, ``main_dino.py``): multi-crop views (2 global + 8
#: local), AdamW with lr 5e-4 × batch/256, weight decay 0.04 rising to 0.4 along a cosine,
#: 10 warm-up epochs then cosine, gradients clipped to norm 3 per parameter.
RECIPE: dict[str, Any] = {
    "augment.name": "multicrop",
    "optim.name": "adamw",
    "optim.lr": 5e-4,
    "optim.weight_decay": 0.04,
    "optim.weight_decay_end": 0.4,
    "optim.momentum": 0.9,
    "optim.warmup_epochs": 10.0,
    "optim.clip_grad": 3.0,
    "optim.clip_grad_per_param": True,
}


@dataclass
class DINOOptions:
    """The reference code's defaults: head of 3 layers D→2048→2048→256 with GELU and no
    BatchNorm, ℓ2-normalized, then a weight-normalized linear layer to K = 65536 prototypes
    whose norm is fixed to 1 and which is not trained in the first epoch; student temperature
    0.1, teacher 0.04 (the ViT-S/16 recipe warms it up from 0.04 to 0.07 over 30 epochs);
    centre momentum 0.9; teacher momentum 0.996 rising to 1 along a cosine."""

    out_dim: int = option(65536, "prototypes K: output width of the head", min=1)
    hidden_dim: int = option(2048, "hidden width of the head's MLP", min=1)
    bottleneck_dim: int = option(256, "width of the MLP's output, before the last layer", min=1)
    head_layers: int = option(3, "linear layers of the head's MLP", min=1)
    use_bn_in_head: bool = option(False, "BatchNorm after the hidden layers of the head")
    norm_last_layer: bool = option(True, "fix the norm of the last layer's weight to 1")
    freeze_last_layer_epochs: int = option(
        1, "epochs during which the last layer of the head is not trained", min=0
    )
    student_temp: float = option(0.1, "temperature of the student softmax", min=1e-6)
    teacher_temp: float = option(0.04, "temperature of the teacher softmax after warm-up", min=1e-6)
    warmup_teacher_temp: float = option(
        0.04, "temperature of the teacher softmax at the first epoch", min=1e-6
    )
    warmup_teacher_temp_epochs: int = option(
        0, "epochs of linear warm-up of the teacher temperature", min=0
    )
    center_momentum: float = option(
        0.9, "momentum of the centre of the teacher outputs", min=0.0, max=1.0
    )
    momentum_teacher: float = option(
        0.996, "EMA decay of the teacher at step 0; rises to 1 by the last step", min=0.0, max=1.0
    )


class DINO:
    """``method=dino``: views ``[global 1, global 2, local 1, ...]``; the cross entropy
    between the centred, sharpened teacher output of each global crop and the student output
    of every other crop; then the centre moves towards the batch mean of the teacher outputs.
    The core moves the teacher after each step, drops the last layer's updates in its frozen
    epochs, and schedules weight decay and clipping by the recipe."""

    def __init__(self, options: DINOOptions) -> None:
        self.options = options

    @hookimpl
    def ssl_build_heads(self, backbone: Any) -> Any:
        from .model import DINOModel

        return DINOModel(backbone, self.options)

    @hookimpl
    def ssl_param_groups(self, model: Any) -> Any:
        from ssl_core import param_groups

        frozen = {"frozen_epochs": self.options.freeze_last_layer_epochs}
        return param_groups(model, {"student_head.last_layer": frozen})

    @hookimpl
    def ssl_compute_loss(self, model: Any, views: list[Any], info: Any) -> dict[str, Any]:
        from .model import dino_loss, teacher_temp_at

        if views[0].shape != views[1].shape:
            raise UserError(
                "method=dino needs its 2 global views of one size first (augment=multicrop); "
                f"the first two views are {tuple(views[0].shape[-2:])} and "
                f"{tuple(views[1].shape[-2:])}"
            )
        o = self.options
        temp = teacher_temp_at(
            info.epoch, o.warmup_teacher_temp, o.teacher_temp, o.warmup_teacher_temp_epochs
        )
        student, teacher = model(views)
        loss = dino_loss(student, teacher, model.center, o.student_temp, temp)
        model.update_center(teacher, o.center_momentum)
        return {"loss": loss, "teacher_temp": loss.new_tensor(temp)}


@hookimpl
def ssl_register_methods(register: Any) -> None:
    register(
        "dino",
        DINO,
        options=DINOOptions,
        views=(2, None),
        description="Self-distillation with no labels: EMA teacher, multi-crop (Caron et al. 2021)",
        defaults=RECIPE,
    )
