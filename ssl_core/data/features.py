"""Features of a frozen encoder over a sequence of images, and one process's share of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ssl_core.data.loader import SampleDataset
from ssl_core.data.transforms import AsSample, eval_transform, normalize


def extract_features(
    encoder: torch.nn.Module,
    items: Sequence[tuple[np.ndarray, int]],
    *,
    image_size: int,
    device: torch.device | str,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode every item's evaluation view with a frozen encoder.

    Images go through :func:`eval_transform` and :func:`normalize`; the encoder runs in eval
    mode under ``torch.no_grad()`` and is put back in the train/eval mode it had.
    ``progress(n)`` is called after each batch with the number of items it held.

    :return: features ``float32 [N, D]`` and labels ``int64 [N]``, both on the CPU, in the
        order of ``items``.
    """
    device = torch.device(device)
    dataset = SampleDataset(items, AsSample(eval_transform(image_size)))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    features: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                x = normalize(batch["image"].to(device, non_blocking=True))
                features.append(encoder(x).flatten(1).float().cpu())
                labels.append(batch["label"].to(torch.int64))
                if progress is not None:
                    progress(len(labels[-1]))
    finally:
        encoder.train(was_training)
    if not features:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.int64)
    return torch.cat(features), torch.cat(labels)


class Shard(Sequence):
    """Every ``world``-th item of ``items`` from ``rank`` on: one process's share of a split."""

    def __init__(self, items: Sequence[Any], rank: int, world: int) -> None:
        self.items, self.rank, self.world = items, rank, world

    def __len__(self) -> int:
        return max(0, (len(self.items) - self.rank + self.world - 1) // self.world)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.items[self.rank + index * self.world]
