"""DINO's networks, loss, centre and teacher temperature (Caron et al. 2021, arXiv 2104.14294)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_core import EMA, gather, mlp, momentum_copy

#: Global crops come first among the views; the teacher sees only these.
NUM_GLOBAL = 2


class WeightNormLinear(nn.Module):
    """A bias-free linear layer with rows w = g · v/‖v‖ (``weight_norm`` over the outputs),
    written out so that it deep-copies and loads like any module; without ``learn_norm``
    there is no g and every row has norm 1 (``norm_last_layer``)."""

    def __init__(self, in_dim: int, out_dim: int, *, learn_norm: bool) -> None:
        super().__init__()
        self.weight_v = nn.Parameter(nn.Linear(in_dim, out_dim, bias=False).weight.detach())
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1)) if learn_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = F.normalize(self.weight_v, dim=1)
        return F.linear(x, weight * self.weight_g if self.weight_g is not None else weight)


class DINOHead(nn.Module):
    """MLP → ℓ2-normalize → :class:`WeightNormLinear` (appendix C): ``[B, D]`` → ``[B, K]``;
    the MLP's weights start from a truncated normal of std 0.02 and zero biases."""

    def __init__(self, in_dim: int, options: object) -> None:
        super().__init__()
        self.mlp = mlp(
            in_dim,
            options.hidden_dim,
            options.bottleneck_dim,
            layers=options.head_layers,
            batch_norm=options.use_bn_in_head,
            bias=True,
            activation=nn.GELU,
        )
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = WeightNormLinear(
            options.bottleneck_dim, options.out_dim, learn_norm=not options.norm_last_layer
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


def multicrop_forward(
    backbone: nn.Module, head: nn.Module, views: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Head outputs of each view; consecutive views of one size share a backbone forward (all
    global crops, then all local ones), the head runs once: the reference's MultiCropWrapper."""
    features, start = [], 0
    while start < len(views):
        end = start + 1
        while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
            end += 1
        features.append(backbone(torch.cat(list(views[start:end]))))
        start = end
    return list(head(torch.cat(features)).chunk(len(views)))


class DINOModel(nn.Module):
    """Student (backbone + head), teacher following it by EMA (logged as
    ``momentum_teacher``), and the centre c of the teacher's outputs, a checkpointed buffer.

    ``student_backbone`` is the backbone object itself (the engine evaluates and exports it).
    """

    def __init__(self, backbone: nn.Module, options: object) -> None:
        super().__init__()
        self.student_backbone = backbone
        self.student_head = DINOHead(backbone.num_features, options)
        self.teacher_backbone = momentum_copy(backbone)
        self.teacher_head = momentum_copy(self.student_head)
        self.ema = EMA(
            {"teacher_backbone": "student_backbone", "teacher_head": "student_head"},
            tau_base=options.momentum_teacher,
            metric="momentum_teacher",
        )
        self.register_buffer("center", torch.zeros(1, options.out_dim))

    def health_modules(self) -> dict[str, nn.Module]:
        """The student head's MLP, whose output (before the ℓ2-normalization and the
        prototypes) is the projection the core's health monitor watches."""
        return {"head": self.student_head.mlp}

    def forward(
        self, views: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Student logits of every view and teacher logits of the global ones."""
        student = multicrop_forward(self.student_backbone, self.student_head, views)
        with torch.no_grad():
            teacher = multicrop_forward(
                self.teacher_backbone, self.teacher_head, views[:NUM_GLOBAL]
            )
        return student, teacher

    @torch.no_grad()
    def update_center(self, teacher: Sequence[torch.Tensor], momentum: float) -> None:
        """c ← m·c + (1 − m)·mean of the teacher's logits over the global batch (eq. 4).

        Each process averages its own rows and only those means travel (every process holds
        as many rows, so their mean is the global batch's): one row of K per process, not the
        whole batch of logits."""
        local = torch.cat([t.detach().float() for t in teacher]).mean(dim=0, keepdim=True)
        batch_mean = gather(local).mean(dim=0, keepdim=True)
        self.center.mul_(momentum).add_(batch_mean, alpha=1.0 - momentum)


def dino_loss(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    center: torch.Tensor,
    student_temp: float,
    teacher_temp: float,
) -> torch.Tensor:
    """H(P_t, P_s) averaged over every (teacher crop, other student crop) pair (eq. 3).

    ``student`` holds ``[B, K]`` logits of every crop, global ones first; ``teacher`` those of
    the global crops, so teacher crop ``i`` and student crop ``i`` are the same view and that
    pair is skipped. P_t = softmax((t − c)/τ_t), no gradient; P_s = softmax(s/τ_s). Each
    pair's cross entropy is averaged over the batch. Returns a float32 scalar.
    """
    # fp32 even under autocast: a softmax over 65536 logits divided by 0.04 needs the range.
    targets = [F.softmax((t.detach().float() - center) / teacher_temp, dim=-1) for t in teacher]
    log_probs = [F.log_softmax(s.float() / student_temp, dim=-1) for s in student]
    pairs = [(t, s) for i, t in enumerate(targets) for v, s in enumerate(log_probs) if v != i]
    if not pairs:
        raise ValueError("dino_loss needs at least two crops")
    return sum(torch.sum(-t * s, dim=-1).mean() for t, s in pairs) / len(pairs)


def teacher_temp_at(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """The teacher temperature of ``epoch`` (0-based): ``np.linspace(warmup_temp, temp,
    warmup_epochs)[epoch]`` over the warm-up epochs (one warm-up epoch is ``warmup_temp``
    alone), then ``temp``."""
    if epoch >= warmup_epochs:
        return float(temp)
    if warmup_epochs == 1:
        return float(warmup_temp)
    return warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1)
