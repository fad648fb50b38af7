"""Semi-supervised fine-tuning (SimCLR's protocol): encoder and a linear head trained end to
end with SGD on a class-balanced ``eval.label_fraction`` of the training labels, chosen with
``eval.seed``. Top-1 and top-5 on the held-out split."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ssl_core.errors import UserError
from ssl_core.evaluation.protocol import (
    Evaluation,
    cosine_schedule,
    linear_head,
    num_classes,
    topk_accuracy,
)

if TYPE_CHECKING:
    from ssl_core.data import ImageData


def balanced_subset(labels: Sequence[int] | np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced random subset: ``fraction`` of every class.

    Each class keeps ``round(n * fraction)`` of its ``n`` items, at least one; which ones
    depends only on ``seed``.

    :raises ValueError: unless ``0 < fraction <= 1``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed) % 2**63, 3])
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, int(np.floor(len(members) * fraction + 0.5)))
        chosen.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


class _Subset(Sequence):
    """The items of ``items`` at ``indices``, read on access (images stay lazy)."""

    def __init__(self, items: Sequence[Any], indices: np.ndarray) -> None:
        self.items, self.indices = items, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.items[int(self.indices[index])]


def finetune_protocol(encoder: Any, data: ImageData, cfg: Any, device: Any) -> Evaluation:
    """Semi-supervised fine-tuning of encoder + linear head on a class-balanced label subset."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from ssl_core.data.features import extract_features
    from ssl_core.data.loader import SampleDataset, default_workers
    from ssl_core.data.transforms import AsSample, eval_transform, normalize

    fraction = float(cfg.eval.label_fraction)
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"eval.label_fraction={fraction} must be > 0 and <= 1 (0.01 is 1 %)")
    labels = np.asarray([label for _, label in data.train])
    subset = balanced_subset(labels, fraction, cfg.eval.seed)
    batch_size = min(cfg.eval.batch_size, len(subset))
    generator = torch.Generator().manual_seed(cfg.eval.seed)
    workers = default_workers(cfg.trainer.num_workers, torch.device(device).type)
    loader = DataLoader(
        SampleDataset(_Subset(data.train, subset), AsSample(eval_transform(cfg.data.image_size))),
        batch_size=batch_size,
        shuffle=True,
        # a last batch of one image would give BatchNorm a single value per channel
        drop_last=len(subset) % batch_size == 1,
        generator=generator,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    torch.manual_seed(cfg.eval.seed)
    model = copy.deepcopy(encoder).to(device)
    head = linear_head(model.num_features, num_classes(data), cfg.eval.seed).to(device)
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(
        params, lr=cfg.eval.finetune_lr, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    epochs = cfg.eval.finetune_epochs
    scheduler = cosine_schedule(optimizer, epochs * len(loader))
    losses: list[tuple[int, float]] = []
    for epoch in range(1, epochs + 1):
        model.train()
        total, seen = 0.0, 0
        for batch in loader:
            x = normalize(batch["image"].to(device, non_blocking=True))
            y = batch["label"].to(device)
            loss = F.cross_entropy(head(model(x)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * y.shape[0]
            seen += y.shape[0]
        losses.append((epoch, total / max(seen, 1)))
    val_x, val_y = extract_features(
        model,
        data.val,
        image_size=cfg.data.image_size,
        device=device,
        batch_size=cfg.eval.batch_size,
        num_workers=workers,
    )
    head.eval()
    with torch.no_grad():
        val = topk_accuracy(head(val_x.to(device)).cpu(), val_y)
    metrics = {"finetune/top1": val[1], "finetune/top5": val[5]}
    facts = {"num_labelled": len(subset), "num_train": len(labels), "num_val": len(val_y)}
    return Evaluation(metrics, {"finetune/train_loss": losses}, facts)
