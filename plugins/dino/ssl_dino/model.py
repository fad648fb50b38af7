"""The DINO model: student and teacher (backbone + head), and the centre of the teacher."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from .heads import DINOHead
from .options import DINOOptions


def multicrop_forward(
    backbone: nn.Module, head: nn.Module, views: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Head outputs of each view, in order; consecutive views of one size share a forward.

    The backbone runs once per run of same-size views (all global crops together, then all
    local ones), so BatchNorm sees each resolution as one batch; the head runs once on all
    features. This is the reference code's ``MultiCropWrapper`` (Caron et al. 2021).
    """
    features: list[torch.Tensor] = []
    start = 0
    while start < len(views):
        end = start + 1
        while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
            end += 1
        features.append(backbone(torch.cat(list(views[start:end]))))
        start = end
    logits = head(torch.cat(features))
    return list(logits.chunk(len(views)))


class DINOModel(nn.Module):
    """Student g_θs (backbone + head) and teacher g_θt, with the centre c (Caron et al. 2021).

    ``student_backbone`` is the backbone object itself (the engine evaluates and exports it).
    ``teacher_backbone`` and ``teacher_head`` start as copies of the student's, never receive
    gradients (``requires_grad=False``) and move only through the EMA update after each
    optimizer step; they run in the same train/eval mode as the student. ``center`` is a
    ``[1, out_dim]`` buffer (so it is checkpointed), updated by the loss hook after each loss.
    """

    def __init__(self, backbone: nn.Module, options: DINOOptions) -> None:
        super().__init__()
        num_features = getattr(backbone, "num_features", None)
        if not isinstance(num_features, int):
            raise TypeError(
                f"DINO needs a backbone exposing an int `num_features`; "
                f"{type(backbone).__name__} has {num_features!r}"
            )
        self.student_backbone = backbone
        self.student_head = DINOHead(
            num_features,
            options.out_dim,
            hidden_dim=options.hidden_dim,
            bottleneck_dim=options.bottleneck_dim,
            num_layers=options.head_layers,
            use_bn=options.use_bn_in_head,
            norm_last_layer=options.norm_last_layer,
        )
        self.teacher_backbone = copy.deepcopy(backbone)
        self.teacher_head = copy.deepcopy(self.student_head)
        for param in self.target_parameters():
            param.requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, options.out_dim))

    def online_parameters(self) -> list[nn.Parameter]:
        """Student parameters, in the order of :meth:`target_parameters`."""
        return [*self.student_backbone.parameters(), *self.student_head.parameters()]

    def target_parameters(self) -> list[nn.Parameter]:
        """Teacher parameters, each following its student twin."""
        return [*self.teacher_backbone.parameters(), *self.teacher_head.parameters()]

    def forward(
        self, views: Sequence[torch.Tensor], num_global: int = 2
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Student logits of every view and teacher logits of the first ``num_global`` ones."""
        student = multicrop_forward(self.student_backbone, self.student_head, views)
        with torch.no_grad():
            teacher = multicrop_forward(
                self.teacher_backbone, self.teacher_head, views[:num_global]
            )
        return student, teacher
