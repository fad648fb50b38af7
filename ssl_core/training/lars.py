"""LARS: Layer-wise Adaptive Rate Scaling (You et al. 2017, arXiv 1708.03888), as BYOL uses it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.sgd import sgd


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
