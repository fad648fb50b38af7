"""DINO's self-distillation loss, the centring of the teacher, and its temperature schedule."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ssl_core.training import distributed


def dino_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    center: torch.Tensor,
    student_temp: float,
    teacher_temp: float,
) -> torch.Tensor:
    """Cross entropy H(P_t, P_s) averaged over every (teacher crop, other student crop) pair.

    Caron et al. 2021 (arXiv 2104.14294, eq. 3 and Algorithm 1). ``student`` holds the
    student's ``[B, K]`` logits of every crop, the global crops first; ``teacher`` the
    teacher's logits of the global crops, in the same order, so teacher crop ``i`` and student
    crop ``i`` are the same view and that pair is skipped. P_t = softmax((t − c)/τ_t) is
    centred by ``center`` (``[1, K]``) and sharpened by the low ``teacher_temp``, and gets no
    gradient; P_s = softmax(s/τ_s). Each pair's cross entropy is averaged over the batch.
    Returns a float32 scalar.
    """
    # fp32 even under autocast: a softmax over 65536 logits divided by 0.04 needs the range.
    targets = [F.softmax((t.detach().float() - center) / teacher_temp, dim=-1) for t in teacher]
    log_probs = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student]
    total = torch.zeros((), device=center.device)
    pairs = 0
    for i, target in enumerate(targets):
        for v, log_prob in enumerate(log_probs):
            if v == i:
                continue
            total = total + torch.sum(-target * log_prob, dim=-1).mean()
            pairs += 1
    if pairs == 0:
        raise ValueError("dino_loss needs at least two crops")
    return total / pairs


@torch.no_grad()
def update_center_(center: torch.Tensor, teacher: Sequence[torch.Tensor], momentum: float) -> None:
    """c ← m·c + (1 − m)·mean of the teacher's logits over the global batch, in place.

    ``teacher`` is the list of ``[B, K]`` teacher logits of the global crops; the mean runs
    over every crop and every image on every process (Caron et al. 2021, eq. 4).
    """
    logits = distributed.gather(torch.cat([t.detach().float() for t in teacher]))
    center.mul_(momentum).add_(logits.mean(dim=0, keepdim=True), alpha=1.0 - momentum)


def teacher_temp_at(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """The teacher temperature of ``epoch`` (0-based), the reference code's schedule.

    Linear over the first ``warmup_epochs`` epochs, from ``warmup_temp`` at epoch 0 to ``temp``
    at epoch ``warmup_epochs − 1`` (``np.linspace`` over them), then ``temp``.
    """
    if epoch >= warmup_epochs - 1:
        return float(temp)
    return warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1)
