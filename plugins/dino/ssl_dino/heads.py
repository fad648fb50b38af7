"""DINO's projection head: an MLP, ℓ2 normalization, and a weight-normalized last layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WeightNormLinear(nn.Module):
    """A bias-free linear layer whose weight rows are w = g · v/‖v‖: ``[B, in]`` → ``[B, out]``.

    ``torch.nn.utils.weight_norm`` over the output dimension, as DINO's last layer uses it,
    written out so that the module deep-copies and loads like any other. With
    ``learn_norm=False`` there is no ``g``: every row has norm 1 (DINO's ``norm_last_layer``).

    While ``frozen`` is true the parameters get a zero gradient. Zero rather than none: under
    data-parallel training every trainable parameter must receive a gradient at each step.
    With norm 1 rows, what an optimizer's weight decay does to ``v`` then (a uniform shrink of
    each row) leaves the layer's output unchanged, so the layer is frozen in effect.
    """

    def __init__(self, in_dim: int, out_dim: int, *, learn_norm: bool) -> None:
        super().__init__()
        self.weight_v = nn.Parameter(nn.Linear(in_dim, out_dim, bias=False).weight.detach())
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1)) if learn_norm else None
        self.frozen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, g = self.weight_v, self.weight_g
        if self.frozen:
            v = v.detach() + 0.0 * v
            g = g.detach() + 0.0 * g if g is not None else None
        weight = F.normalize(v, dim=1)
        if g is not None:
            weight = weight * g
        return F.linear(x, weight)


class DINOHead(nn.Module):
    """MLP → ℓ2-normalize → :class:`WeightNormLinear`: ``[B, D]`` → ``[B, out_dim]`` logits.

    Caron et al. 2021 (arXiv 2104.14294, appendix C): a ``num_layers``-layer MLP (hidden
    layers Linear → [BatchNorm →] GELU) to ``bottleneck_dim``, then the prototypes layer. The
    MLP's linear weights start from a truncated normal of std 0.02 and zero biases, as in the
    reference code.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        hidden_dim: int,
        bottleneck_dim: int,
        num_layers: int,
        use_bn: bool,
        norm_last_layer: bool,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(width, hidden_dim))
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            width = hidden_dim
        layers.append(nn.Linear(width, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, learn_norm=not norm_last_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))
