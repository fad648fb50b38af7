"""Barlow Twins (Zbontar et al. 2021, arXiv 2103.03230): model, loss and run plugin."""

from __future__ import annotations

from typing import Any

import torch
from ssl_core import gather, hookimpl, mlp, param_groups
from torch import nn


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> torch.Tensor:
    """Σᵢ(1 − Cᵢᵢ)² + λ·Σᵢ Σⱼ≠ᵢ Cᵢⱼ² with C the cross-correlation of the standardized embeddings.

    ``z1`` and ``z2`` are ``[B, d]`` embeddings of the two views on this process. Both are
    gathered from every process first, so the standardization (zero mean, unit variance per
    dimension over the batch, as the reference's affine-free BatchNorm does) and C (``[d, d]``,
    eq. 2 of the paper) use the global batch. Returns a float32 scalar.
    """
    z1, z2 = gather(z1.float()), gather(z2.float())
    z1 = nn.functional.batch_norm(z1, None, None, training=True)
    z2 = nn.functional.batch_norm(z2, None, None, training=True)
    c = z1.T @ z2 / z1.shape[0]
    on_diag = (torch.diagonal(c) - 1.0).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


class BarlowTwinsModel(nn.Module):
    """Encoder and projector shared by both views; no target network.

    ``encoder`` must be the backbone object the engine built: the engine evaluates and exports
    it, so the model holds it rather than a copy. The projector is (Linear → BatchNorm → ReLU)
    × 2 → Linear, without biases (§4).
    """

    def __init__(self, backbone: nn.Module, options: Any) -> None:
        super().__init__()
        self.encoder = backbone
        self.projector = mlp(
            backbone.num_features,
            options.proj_hidden_dim,
            options.proj_dim,
            layers=3,
            last_bias=False,
        )

    def forward(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.projector(self.encoder(view)) for view in views]


class BarlowTwins:
    """The run plugin of ``method=barlow_twins``: one object per run, answering the step hooks."""

    def __init__(self, options: Any) -> None:
        self.options = options

    @hookimpl
    def ssl_build_heads(self, backbone: nn.Module) -> BarlowTwinsModel:
        return BarlowTwinsModel(backbone, self.options)

    @hookimpl
    def ssl_param_groups(self, model: BarlowTwinsModel) -> Any:
        # §4: biases and BatchNorm parameters train at 0.0048 where the weights get 0.2.
        return param_groups(model, no_decay={"lr_scale": self.options.bias_lr_scale})

    @hookimpl
    def ssl_compute_loss(self, model: BarlowTwinsModel, views: list[torch.Tensor]) -> dict:
        z1, z2 = model(views)
        return {"loss": barlow_twins_loss(z1, z2, self.options.lambd)}
