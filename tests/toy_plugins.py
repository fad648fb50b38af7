"""Tiny components for engine tests: a GroupNorm backbone, an EMA method, deterministic views.

Nothing in their path uses BatchNorm and the views are functions of each sample's seed, so a
step over a batch equals, up to rounding, the same step split into micro-batches or processes.
Registered with ``get_plugins(extra=[("toy", toy_plugins)])``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssl_core import EMA, hookimpl, momentum_copy


class TinyGN(nn.Sequential):
    """conv → GroupNorm → ReLU → global pool: ``[B,3,H,W]`` → ``[B,8]``."""

    num_features = 8

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.GroupNorm(2, 8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )


class ToyModel(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.online_encoder = backbone
        self.predictor = nn.Linear(8, 8)
        self.target_encoder = momentum_copy(backbone)
        self.ema = EMA({"target_encoder": "online_encoder"}, tau_base=0.9)

    def forward(self, views: list[torch.Tensor]) -> torch.Tensor:
        p = [self.predictor(self.online_encoder(v)) for v in views]
        with torch.no_grad():
            z = [self.target_encoder(v) for v in views]
        cos = nn.functional.cosine_similarity
        return (2 - cos(p[0], z[1]).mean() - cos(p[1], z[0]).mean()).float()


class ToyMethod:
    @hookimpl
    def ssl_build_heads(self, backbone: nn.Module) -> nn.Module:
        return ToyModel(backbone)

    @hookimpl
    def ssl_compute_loss(self, model: Any, views: list[torch.Tensor]) -> dict:
        return {"loss": model(views)}


class ToyBackbone:
    @hookimpl
    def ssl_build_backbone(self) -> nn.Module:
        return TinyGN()


class ToyViews:
    """Workers make both views (a random shift seeded per sample); the device only converts."""

    def __init__(self, config: Any) -> None:
        self.size = int(config.data.image_size)

    @hookimpl
    def ssl_sample_transform(self) -> Any:
        return ToyTransform(self.size)

    @hookimpl
    def ssl_make_views(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        return [batch["a"], batch["b"]]


class ToyTransform:
    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(image[: self.size, : self.size])).float() / 255
        x = x.permute(2, 0, 1)
        shift = int(torch.randint(1, 4, ()))
        return {"a": x, "b": torch.roll(x, shift, dims=-1).flip(-1)}


@hookimpl
def ssl_register_methods(register: Any) -> None:
    register("toy", lambda: ToyMethod(), views=2, description="test method")


@hookimpl
def ssl_register_backbones(register: Any) -> None:
    register("tinygn", lambda: ToyBackbone(), description="test backbone")


@hookimpl
def ssl_register_view_generators(register: Any) -> None:
    register("toyviews", ToyViews, views=2, description="test views")


class Recorder:
    """Writes this process's losses and, after the last target update, its parameters.

    Files go to ``$SSL_TEST_RECORD``: ``rank{r}-loss.jsonl`` (one ``[step, loss]`` a line) and
    ``rank{r}-final.pt`` (``named_parameters`` of the unwrapped model: online and target).
    """

    def __init__(self) -> None:
        self.folder = Path(os.environ["SSL_TEST_RECORD"])
        self.updates: list[tuple[int, float]] = []

    def _rank(self) -> int:
        from ssl_core.training import distributed

        return distributed.rank()

    @hookimpl(wrapper=True)
    def ssl_compute_loss(self, info: Any) -> Any:
        out = yield
        with open(self.folder / f"rank{self._rank()}-loss.jsonl", "a") as f:
            f.write(json.dumps([info.step, float(out["loss"].detach())]) + "\n")
        return out

    @hookimpl(wrapper=True)
    def ssl_update_target(self, model: nn.Module, info: Any) -> Any:
        out = yield  # the core's update of the declared targets has run
        self.updates.append((info.step, out.get("tau", float("nan"))))
        if info.step + 1 == info.total_steps:
            params = {k: v.detach().clone() for k, v in model.named_parameters()}
            torch.save(params, self.folder / f"rank{self._rank()}-final.pt")
            torch.save(self.updates, self.folder / f"rank{self._rank()}-updates.pt")
        return out
