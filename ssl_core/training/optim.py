"""The optimizer of a run and its learning-rate schedule: the ``optim`` config group.

The default follows BYOL (Grill et al. 2020, arXiv 2006.07733, Appendix C): LARS (You et al.
2017, arXiv 1708.03888) with momentum 0.9 and trust coefficient 1e-3, biases and normalization
parameters excluded from weight decay and from the LARS adaptation, learning rate
``base × batch/256``, a linear warm-up, then a cosine decay to 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.sgd import sgd

from ssl_core.config.groups import OPTIMIZERS, OptimOptions  # noqa: F401  (re-exported)
from ssl_core.errors import ConfigError


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling, the variant of BYOL's reference code.

    For each parameter ``w`` with gradient ``g`` in a group not marked ``lars_exclude``::

        g ← g + weight_decay·w
        g ← g · η‖w‖/‖g‖        (η = trust_coefficient; factor 1 when either norm is 0)

    then, in every group, ``buf ← momentum·buf + g`` and ``w ← w − lr·buf``. Groups with
    ``lars_exclude=True`` (biases, normalization parameters) skip both weight decay and the
    trust ratio, so they get plain momentum SGD. The momentum buffer is
    ``state[p]["momentum_buffer"]``.

    The step works in place: ``p.grad`` holds the adapted gradient afterwards. Out-of-place
    updates allocate a fresh copy of every gradient twice per step, which on the CPU costs more
    than the arithmetic (the allocator hands large blocks back to the kernel and page-faults
    them in again); the momentum update is then one fused kernel per device where torch has one
    (``torch.optim.SGD``'s ``fused`` path), foreach ops elsewhere.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 1e-3,
    ) -> None:
        if lr < 0 or weight_decay < 0 or trust_coefficient < 0 or not 0 <= momentum < 1:
            raise ValueError(
                f"LARS: invalid lr={lr}, momentum={momentum}, weight_decay={weight_decay} "
                f"or trust_coefficient={trust_coefficient}"
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "lars_exclude": False,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if not group["lars_exclude"]:
                self._adapt_(params, grads, group)
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(state["momentum_buffer"])
            # buf ← momentum·buf + g; w ← w − lr·buf (SGD without dampening, from zero buffers)
            sgd(
                params,
                grads,
                bufs,
                weight_decay=0.0,
                momentum=group["momentum"],
                lr=group["lr"],
                dampening=0.0,
                nesterov=False,
                maximize=False,
                **_sgd_kernel(params[0].device),
            )
        return loss

    @staticmethod
    def _adapt_(
        params: list[torch.Tensor], grads: list[torch.Tensor], group: dict[str, Any]
    ) -> None:
        """Weight decay then the trust ratio, written into ``grads``."""
        if group["weight_decay"]:
            torch._foreach_add_(grads, params, alpha=group["weight_decay"])
        w_norm = torch.stack(torch._foreach_norm(params))
        g_norm = torch.stack(torch._foreach_norm(grads))
        trust = torch.where(
            (w_norm > 0) & (g_norm > 0),
            group["trust_coefficient"] * w_norm / g_norm,
            torch.ones_like(w_norm),
        )
        torch._foreach_mul_(grads, list(trust.unbind()))


def _sgd_kernel(device: torch.device) -> dict[str, bool]:
    """``fused=True`` where torch has a fused SGD kernel for ``device``, else ``foreach``."""
    from torch.optim.optimizer import _get_fused_kernels_supported_devices

    if device.type in _get_fused_kernels_supported_devices():
        return {"fused": True}
    return {"foreach": True}


def param_groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    """The trainable parameters of ``model`` in two optimizer groups: regular, then excluded.

    Excluded are the parameters with ``ndim <= 1`` (biases and normalization scales/shifts);
    their group has ``weight_decay=0.0`` and ``lars_exclude=True`` (BYOL, Appendix C).
    Parameters with ``requires_grad=False`` (a target network) are left out; empty groups are
    dropped.
    """
    regular: list[torch.nn.Parameter] = []
    excluded: list[torch.nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (excluded if p.ndim <= 1 else regular).append(p)
    groups: list[dict[str, Any]] = []
    if regular:
        groups.append({"params": regular})
    if excluded:
        groups.append({"params": excluded, "weight_decay": 0.0, "lars_exclude": True})
    return groups


def build_optimizer(model: torch.nn.Module, options: Any, batch_size: int) -> torch.optim.Optimizer:
    """The optimizer named by ``options.name`` over :func:`param_groups` of ``model``.

    :param options: the ``optim`` config node (:class:`OptimOptions` fields).
    :param batch_size: images per optimizer step; the learning rate is
        ``options.lr × batch_size / 256`` (Goyal et al. 2017 linear scaling, as in BYOL).
    :return: an optimizer whose groups hold that rate as ``"base_lr"`` (and as ``"lr"``, until
        :func:`set_lr` applies the schedule).
    """
    if options.momentum >= 1:
        raise ConfigError(f"optim.momentum={options.momentum} is out of range; must be < 1")
    lr = options.lr * batch_size / 256
    groups = param_groups(model)
    name = options.name
    if name == "lars":
        optimizer: torch.optim.Optimizer = LARS(
            groups,
            lr=lr,
            momentum=options.momentum,
            weight_decay=options.weight_decay,
            trust_coefficient=options.trust_coefficient,
        )
    elif name == "sgd":
        optimizer = torch.optim.SGD(
            groups, lr=lr, momentum=options.momentum, weight_decay=options.weight_decay
        )
    elif name == "adamw":
        optimizer = torch.optim.AdamW(
            groups, lr=lr, betas=(options.momentum, 0.999), weight_decay=options.weight_decay
        )
    else:
        raise ConfigError(f"invalid value optim.name={name!r}; valid: {', '.join(OPTIMIZERS)}")
    for group in optimizer.param_groups:
        group["base_lr"] = lr
    return optimizer


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total_steps``.

    Linear warm-up, ``base_lr·(step+1)/warmup_steps`` for ``step < warmup_steps``, so the first
    step already moves and step ``warmup_steps − 1`` reaches ``base_lr``; then a cosine from
    ``base_lr`` at step ``warmup_steps`` down to 0 at step ``total_steps`` (one past the last
    step). ``warmup_steps=0`` starts with the cosine. The warm-up is never shortened: when it
    is as long as the run or longer, the whole run is warm-up.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    if decay_steps <= 0 or step >= total_steps:
        return 0.0
    progress = (step - warmup_steps) / decay_steps
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(
    optimizer: torch.optim.Optimizer, step: int, total_steps: int, warmup_steps: int
) -> float:
    """Set every group's ``lr`` from its ``base_lr`` by :func:`lr_at`; returns the first's."""
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, total_steps, warmup_steps, group["base_lr"])
    return optimizer.param_groups[0]["lr"]
