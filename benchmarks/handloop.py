"""The reference the engine is measured against: one BYOL step written out in plain PyTorch.

Nothing here comes from ssl_core or its plugins; the math is BYOL's (Grill et al. 2020, arXiv
2006.07733) as the ``byol`` method computes it: online f → g → q and target f_ξ → g_ξ, each view
through its own forward pass, loss 2 − 2·cos summed over both directions, LARS with momentum
(biases and normalization parameters excluded), then ξ ← τ·ξ + (1 − τ)·θ with one foreach lerp.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim),
    )


class HandWrittenBYOL:
    """A BYOL training step with no framework around it.

    ``step(views)`` takes the two collated ``uint8 [B,3,S,S]`` views the CPU workers deliver and
    returns the loss as a float; ``channels_last`` and ``concat_views`` are the two speed-ups
    the engine offers, for comparison; ``autocast`` a dtype for the forward pass (bf16).
    """

    def __init__(
        self,
        backbone: nn.Module,
        device: torch.device,
        *,
        lr: float = 0.1,
        tau: float = 0.99,
        hidden: int = 4096,
        proj_dim: int = 256,
        channels_last: bool = False,
        concat_views: bool = False,
        autocast: torch.dtype | None = None,
    ) -> None:
        self.device = device
        self.autocast = autocast
        self.tau = tau
        self.lr = lr
        self.concat_views = concat_views
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.encoder = backbone
        self.projector = mlp(backbone.num_features, hidden, proj_dim)
        self.predictor = mlp(proj_dim, hidden, proj_dim)
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_projector = copy.deepcopy(self.projector)
        modules = [self.encoder, self.projector, self.predictor]
        modules += [self.target_encoder, self.target_projector]
        for module in modules:
            module.to(device, memory_format=self.memory_format).train()
        self.target = [*self.target_encoder.parameters(), *self.target_projector.parameters()]
        for p in self.target:
            p.requires_grad_(False)
        self.online = [*self.encoder.parameters(), *self.projector.parameters()]
        trainable = self.online + list(self.predictor.parameters())
        self.adapted = [p for p in trainable if p.ndim > 1]
        self.excluded = [p for p in trainable if p.ndim <= 1]
        self.buffers = [torch.zeros_like(p) for p in self.adapted + self.excluded]
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1)

    def _prepare(self, view: torch.Tensor) -> torch.Tensor:
        x = view.to(self.device, non_blocking=True).float().div_(255.0)
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def _online(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.projector(self.encoder(x)))

    @torch.no_grad()
    def _target(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_projector(self.target_encoder(x))

    @staticmethod
    def _loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        p, z = F.normalize(p.float(), dim=-1), F.normalize(z.float(), dim=-1)
        return (2 - 2 * (p * z).sum(-1)).mean()

    @torch.no_grad()
    def _lars(self, weight_decay: float = 1e-6, eta: float = 1e-3, momentum: float = 0.9) -> None:
        grads = [p.grad for p in self.adapted]
        grads = torch._foreach_add(grads, self.adapted, alpha=weight_decay)
        w_norm = torch.stack(torch._foreach_norm(self.adapted))
        g_norm = torch.stack(torch._foreach_norm(grads))
        trust = torch.where((w_norm > 0) & (g_norm > 0), eta * w_norm / g_norm, 1.0)
        grads = list(torch._foreach_mul(grads, list(trust.unbind())))
        grads += [p.grad for p in self.excluded]
        torch._foreach_mul_(self.buffers, momentum)
        torch._foreach_add_(self.buffers, grads)
        torch._foreach_add_(self.adapted + self.excluded, self.buffers, alpha=-self.lr)

    def step(self, views: list[torch.Tensor]) -> float:
        x1, x2 = (self._prepare(v) for v in views)
        with torch.autocast(self.device.type, self.autocast, enabled=self.autocast is not None):
            if self.concat_views:
                p1, p2 = self._online(torch.cat([x1, x2])).chunk(2)
                z1, z2 = self._target(torch.cat([x1, x2])).chunk(2)
            else:
                p1, p2 = self._online(x1), self._online(x2)
                z1, z2 = self._target(x1), self._target(x2)
        loss = self._loss(p1, z2) + self._loss(p2, z1)
        for p in self.adapted + self.excluded:
            p.grad = None
        loss.backward()
        self._lars()
        with torch.no_grad():
            torch._foreach_lerp_(self.target, self.online, 1.0 - self.tau)
        return loss.item()
