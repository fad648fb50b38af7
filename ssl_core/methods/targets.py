"""Exponential moving averages for target networks, and the cosine schedule of their decay.

Method-agnostic: a method names which target tensors follow which online tensors and calls
:func:`ema_update_` right after each optimizer step, with τ from :func:`cosine_tau`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


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
