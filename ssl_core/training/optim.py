"""The optimizer of a run and its schedules: the ``optim`` config group applied to parameter
groups.

The default follows BYOL (Grill et al. 2020, arXiv 2006.07733, Appendix C): LARS (You et al.
2017, arXiv 1708.03888) with momentum 0.9 and trust coefficient 1e-3, biases and normalization
parameters excluded from weight decay and from the LARS adaptation, learning rate
``base × batch/256``, a linear warm-up, then a cosine decay to 0. A method may give its own
parameter groups (:class:`ssl_core.ParamGroup`): a learning-rate factor, a fixed learning rate,
its own weight decay, frozen epochs. ``optim.weight_decay_end`` makes the weight decay follow
a cosine (DINO); ``optim.clip_grad`` clips gradients.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import torch

from ssl_core.config.groups import OPTIMIZERS, OptimOptions  # noqa: F401  (re-exported)
from ssl_core.errors import ConfigError
from ssl_core.methods.param_groups import ParamGroup
from ssl_core.training.lars import LARS

#: The warm-up never takes more than this share of a run's optimizer steps: BYOL's, SimCLR's
#: and DINO's 10 warm-up epochs are 10 % of their shortest (100-epoch) schedules and MoCo v3's
#: ViT recipe 13 %; a 5-epoch run asked for 10 warm-up epochs would never reach its rate.
MAX_WARMUP_SHARE = 0.2


def build_optimizer(
    groups: list[ParamGroup], options: Any, batch_size: int
) -> torch.optim.Optimizer:
    """The optimizer named by ``options.name`` over ``groups``.

    :param options: the ``optim`` config node (:class:`OptimOptions` fields).
    :param batch_size: images per optimizer step; the learning rate is
        ``options.lr × batch_size / 256 × group.lr_scale`` (Goyal et al. 2017 linear scaling,
        as in BYOL).
    :return: an optimizer whose torch groups hold that rate as ``"base_lr"``, the group's
        ``"name"``, ``"fixed_lr"``, ``"base_wd"`` and ``"wd_end"`` (weight-decay schedule),
        ``"frozen_epochs"`` and ``"lars_exclude"``; :func:`apply_schedule` sets ``lr`` and
        ``weight_decay`` from them at every step.
    """
    if options.momentum >= 1:
        raise ConfigError(f"optim.momentum={options.momentum} is out of range; must be < 1")
    lr = options.lr * batch_size / 256
    torch_groups = []
    for group in groups:
        own = group.weight_decay is not None
        weight_decay = group.weight_decay if own else options.weight_decay
        torch_groups.append(
            {
                "params": list(group.params),
                "name": group.name,
                "lr": lr * group.lr_scale,
                "base_lr": lr * group.lr_scale,
                "fixed_lr": group.fixed_lr,
                "weight_decay": weight_decay,
                "base_wd": weight_decay,
                "wd_end": None if own else options.get("weight_decay_end"),
                "lars_exclude": group.exclude_from_lars,
                "frozen_epochs": group.frozen_epochs,
            }
        )
    name = options.name
    if name == "lars":
        return LARS(
            torch_groups,
            lr=lr,
            momentum=options.momentum,
            weight_decay=options.weight_decay,
            trust_coefficient=options.trust_coefficient,
        )
    if name == "sgd":
        return torch.optim.SGD(
            torch_groups, lr=lr, momentum=options.momentum, weight_decay=options.weight_decay
        )
    if name == "adamw":
        return torch.optim.AdamW(
            torch_groups, lr=lr, betas=(options.momentum, 0.999), weight_decay=options.weight_decay
        )
    raise ConfigError(f"invalid value optim.name={name!r}; valid: {', '.join(OPTIMIZERS)}")


def warmup_steps(warmup_epochs: float, steps_per_epoch: int, total_steps: int) -> int:
    """Optimizer steps of warm-up: ``warmup_epochs`` epochs, at most :data:`MAX_WARMUP_SHARE`
    of the run (a note on stderr says when the run is too short for the epochs asked)."""
    asked = round(warmup_epochs * steps_per_epoch)
    allowed = int(MAX_WARMUP_SHARE * total_steps)
    if asked > allowed:
        print(
            f"note: optim.warmup_epochs={warmup_epochs:g} is {asked} of the run's {total_steps} "
            f"steps; warming up over {allowed} (at most {MAX_WARMUP_SHARE:.0%} of the run)",
            file=sys.stderr,
        )
        return allowed
    return asked


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total_steps``.

    Linear warm-up, ``base_lr·(step+1)/warmup_steps`` for ``step < warmup_steps``, so the first
    step already moves and step ``warmup_steps − 1`` reaches ``base_lr``; then a cosine from
    ``base_lr`` at step ``warmup_steps`` down to 0 at step ``total_steps`` (one past the last
    step). ``warmup_steps=0`` starts with the cosine; :func:`warmup_steps` keeps the warm-up
    to a share of the run.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    if decay_steps <= 0 or step >= total_steps:
        return 0.0
    progress = (step - warmup_steps) / decay_steps
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_between(start: float, end: float, step: int, total_steps: int) -> float:
    """A cosine from ``start`` at step 0 to ``end`` at step ``total_steps`` (DINO's
    ``cosine_scheduler``, per step): ``end + (start − end)·(1 + cos(π·k/K))/2``."""
    if total_steps <= 0:
        return start
    progress = min(max(step, 0), total_steps) / total_steps
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def apply_schedule(
    optimizer: torch.optim.Optimizer, step: int, total_steps: int, warmup: int
) -> dict[str, float]:
    """Set every group's ``lr`` and ``weight_decay`` for optimizer step ``step``.

    :return: ``{"lr": first group's, "lr/<group>": ..., "wd/<group>": ...}`` to log.
    """
    metrics: dict[str, float] = {}
    for group in optimizer.param_groups:
        base = group["base_lr"]
        group["lr"] = base if group.get("fixed_lr") else lr_at(step, total_steps, warmup, base)
        if group.get("wd_end") is not None:
            group["weight_decay"] = cosine_between(
                group["base_wd"], group["wd_end"], step, total_steps
            )
        name = group.get("name", "default")
        metrics[f"lr/{name}"] = group["lr"]
        metrics[f"wd/{name}"] = group["weight_decay"]
    metrics["lr"] = optimizer.param_groups[0]["lr"]
    return metrics


def drop_frozen_gradients(optimizer: torch.optim.Optimizer, epoch: int) -> None:
    """No update this step for groups still frozen at ``epoch`` (0-based): their gradients go.

    The optimizer skips a parameter without a gradient, weight decay included, as DINO's
    ``cancel_gradients_last_layer`` does.
    """
    for group in optimizer.param_groups:
        if epoch < group.get("frozen_epochs", 0):
            for param in group["params"]:
                param.grad = None


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float, per_param: bool) -> None:
    """Scale gradients down to norm ``max_norm``: their global norm, or each parameter's own
    (DINO's ``clip_gradients``: factor ``max_norm / (‖g‖ + 1e-6)`` when below 1)."""
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if not params:
        return
    if not per_param:
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return
    grads = [p.grad for p in params]
    norms = torch._foreach_norm(grads)
    factors = [torch.clamp(max_norm / (n + 1e-6), max=1.0) for n in norms]
    torch._foreach_mul_(grads, factors)
