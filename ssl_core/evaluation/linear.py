"""Linear evaluation: a frozen encoder's features computed once, a linear classifier on them.

The features of the evaluation views are standardized with the training split's mean and std
(a BatchNorm without affine parameters, as MAE does), and the classifier is trained with
AdamW and a cosine schedule. Top-1 and top-5 on the held-out split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ssl_core.evaluation.protocol import (
    Evaluation,
    cosine_schedule,
    linear_head,
    num_classes,
    topk_accuracy,
)

if TYPE_CHECKING:
    import torch

    from ssl_core.data import ImageData


@dataclass
class LinearClassifier:
    """A linear layer on standardized features: ``head((x - mean) / std)``."""

    mean: torch.Tensor
    std: torch.Tensor
    head: torch.nn.Linear

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            x = (features.to(self.mean.device) - self.mean) / self.std
            return self.head(x)


def train_linear(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device | str = "cpu",
    on_epoch: Any = None,
) -> LinearClassifier:
    """Fit a linear classifier to fixed features with AdamW and a cosine schedule.

    :param features: ``[N, D]`` training features; ``labels`` ``[N]`` in ``[0, num_classes)``.
    :param on_epoch: called as ``on_epoch(epoch, mean_loss)`` after each epoch.
    """
    import torch
    import torch.nn.functional as F

    device = torch.device(device)
    x = features.to(device, torch.float32)
    y = labels.to(device, torch.int64)
    mean = x.mean(0, keepdim=True)
    std = x.std(0, keepdim=True).clamp_min(1e-6) if x.shape[0] > 1 else torch.ones_like(mean)
    x = (x - mean) / std
    head = linear_head(x.shape[1], num_classes, seed).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    scheduler = cosine_schedule(optimizer, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(x.shape[0], generator=generator).to(device)
        total = 0.0
        for start in range(0, x.shape[0], batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(head(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * batch.shape[0]
        if on_epoch is not None:
            on_epoch(epoch, total / x.shape[0])
    head.eval()
    return LinearClassifier(mean, std, head)


def linear_protocol(encoder: Any, data: ImageData, cfg: Any, device: Any) -> Evaluation:
    """Linear evaluation: frozen encoder, features cached once, linear classifier on them."""
    import torch

    from ssl_core.data.features import extract_features
    from ssl_core.data.loader import default_workers

    options = {
        "image_size": cfg.data.image_size,
        "device": device,
        "batch_size": cfg.eval.batch_size,
        "num_workers": default_workers(cfg.trainer.num_workers, torch.device(device).type),
    }
    train_x, train_y = extract_features(encoder, data.train, **options)
    val_x, val_y = extract_features(encoder, data.val, **options)
    losses: list[tuple[int, float]] = []
    classifier = train_linear(
        train_x,
        train_y,
        num_classes(data),
        epochs=cfg.eval.linear_epochs,
        lr=cfg.eval.linear_lr,
        batch_size=cfg.eval.batch_size,
        seed=cfg.eval.seed,
        device=device,
        on_epoch=lambda epoch, loss: losses.append((epoch, loss)),
    )
    val = topk_accuracy(classifier(val_x), val_y)
    train = topk_accuracy(classifier(train_x), train_y, ks=(1,))
    metrics = {"linear/top1": val[1], "linear/top5": val[5], "linear/train_top1": train[1]}
    params = {"num_train": len(train_y), "num_val": len(val_y), "num_features": train_x.shape[1]}
    return Evaluation(metrics, {"linear/train_loss": losses}, params)
