"""Target networks that follow the online network by an exponential moving average.

A method's model says which of its modules are targets and which online module each follows,
with an :class:`EMA` attribute; the core then updates them right after every optimizer step
(ξ ← τ·ξ + (1 − τ)·θ, τ rising from ``tau_base`` to 1 along a cosine over the run's optimizer
steps) and logs τ. The model builds its targets with :func:`momentum_copy`::

    self.target_encoder = momentum_copy(backbone)
    self.target_projector = momentum_copy(self.projector)
    self.ema = EMA({"target_encoder": "online_encoder", "target_projector": "projector"},
                   tau_base=options.tau_base, metric="tau")

A method that needs another update implements ``ssl_update_target`` itself.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from ssl_core.training.run import StepInfo


def cosine_tau(step: int, total_steps: int, tau_base: float) -> float:
    """EMA decay τ at optimizer step ``step`` of ``total_steps``, rising from ``tau_base`` to 1.

    τ = 1 − (1 − τ_base)·(cos(π·k/K) + 1)/2 with k = ``step`` (optimizer steps taken before
    the update, 0 for the first) and K = ``total_steps``: τ_base at k = 0, 1 at k = K
    (Grill et al. 2020, arXiv 2006.07733). k is clamped to [0, K] so that steps past the
    planned end keep τ = 1; with K ≤ 0 there is no schedule to follow and τ stays τ_base.
    """
    if total_steps <= 0:
        return float(tau_base)
    progress = min(max(step, 0), total_steps) / total_steps
    return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * progress) + 1.0) / 2.0


def ema_update_(target: Iterable[torch.Tensor], online: Iterable[torch.Tensor], tau: float) -> None:
    """Move each target tensor towards its online tensor in place: ξ ← τ·ξ + (1 − τ)·θ.

    ``target`` and ``online`` are matching sequences of parameters (not buffers: a target's
    BatchNorm statistics come from its own forward passes), same shapes, dtypes and devices.
    The online tensors are only read. One fused ``torch._foreach_lerp_`` over all tensors,
    so the cost does not grow with a Python loop per tensor.
    """
    target = list(target)
    online = list(online)
    if len(target) != len(online):
        raise ValueError(
            f"ema_update_ needs one online tensor per target tensor; got {len(target)} target "
            f"and {len(online)} online"
        )
    if not target:
        return
    with torch.no_grad():
        # lerp(ξ, θ, w) = ξ + w·(θ − ξ) = (1 − w)·ξ + w·θ, so w = 1 − τ.
        torch._foreach_lerp_(target, online, 1.0 - tau)


def momentum_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` to serve as its target: same weights, no gradient, ever.

    Its parameters have ``requires_grad=False``, so the optimizer never sees them; it moves
    only through the EMA update. It runs in the same train/eval mode as the rest of the model,
    so its BatchNorm statistics come from its own forward passes.
    """
    target = copy.deepcopy(module)
    for param in target.parameters():
        param.requires_grad_(False)
    return target


class EMA:
    """Which target module follows which online module, and the decay schedule.

    :param pairs: ``{target: online}`` submodule names of the model (``"target_encoder":
        "online_encoder"``); each target has the same parameters, in the same order, as its
        online module.
    :param tau_base: τ at the first optimizer step; τ rises to 1 along a cosine over the run
        (:func:`cosine_tau`).
    :param metric: the name τ is logged under at every step (``tau``, ``momentum``).
    """

    def __init__(self, pairs: Mapping[str, str], tau_base: float, metric: str = "tau") -> None:
        self.pairs = dict(pairs)
        self.tau_base = float(tau_base)
        self.metric = metric
        self._found: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"EMA({self.pairs!r}, tau_base={self.tau_base}, metric={self.metric!r})"

    def __deepcopy__(self, memo: dict) -> EMA:
        return EMA(self.pairs, self.tau_base, self.metric)

    def __getstate__(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "tau_base": self.tau_base, "metric": self.metric}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["pairs"], state["tau_base"], state["metric"])

    def parameters(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(target, online)`` parameter lists of ``model``, matched one to one.

        Found once per model and kept: by the first update the model sits on its device, so
        the parameter objects are final.
        """
        found = self._found.get(model)
        if found is None:
            target: list[torch.Tensor] = []
            online: list[torch.Tensor] = []
            for target_name, online_name in self.pairs.items():
                t = list(model.get_submodule(target_name).parameters())
                o = list(model.get_submodule(online_name).parameters())
                if [p.shape for p in t] != [p.shape for p in o]:
                    raise ValueError(
                        f"target '{target_name}' does not match online '{online_name}': "
                        "their parameters differ in number or shape"
                    )
                target += t
                online += o
            found = self._found[model] = (target, online)
        return found

    def update(self, model: nn.Module, step: int, total_steps: int) -> dict[str, float]:
        """Move the targets of ``model`` after optimizer step ``step``; returns ``{metric: τ}``."""
        tau = cosine_tau(step, total_steps, self.tau_base)
        ema_update_(*self.parameters(model), tau)
        return {self.metric: tau}


def update_declared_targets(model: nn.Module, info: StepInfo) -> dict[str, Any]:
    """The core's target update: every :class:`EMA` attribute of ``model``; ``{}`` without one."""
    metrics: dict[str, Any] = {}
    for value in vars(model).values():
        if isinstance(value, EMA):
            metrics.update(value.update(model, info.step, info.total_steps))
    return metrics
