"""What every evaluation protocol shares: its result, top-k accuracy, a seeded linear head."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ssl_core.data import ImageData


@dataclass
class Evaluation:
    """What a protocol measured: final metrics, per-epoch histories, and facts to log."""

    metrics: dict[str, float]
    history: dict[str, list[tuple[int, float]]]
    params: dict[str, Any]


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict:
    """``{k: share of rows whose label is among the k largest logits}``; k capped at classes."""
    import torch

    if logits.shape[0] == 0:
        return {k: 0.0 for k in ks}
    largest = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = largest == labels.view(-1, 1).to(largest.device)
    return {k: float(hits[:, :k].any(dim=1).to(torch.float32).mean()) for k in ks}


def cosine_schedule(optimizer: Any, total_steps: int) -> Any:
    import torch

    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def linear_head(num_features: int, num_classes: int, seed: int) -> torch.nn.Linear:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Linear(num_features, num_classes)


def num_classes(data: ImageData) -> int:
    if data.classes:
        return len(data.classes)
    return int(max(label for _, label in data.train)) + 1
