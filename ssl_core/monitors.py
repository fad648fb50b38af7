"""Monitors of a training run: the online kNN top-1 and the online linear probe.

Both are built-in lifecycle plugins. They measure the encoder while it trains and never change
the training: the probe reads detached copies of the encoder's features and has its own
optimizer, and every evaluation runs with the random number generators saved and restored,
so a run with monitors gives bitwise the same encoder as one without.

Their numbers reach the trackers through the ``metrics`` of :func:`ssl_epoch_end`: the monitors
run first there (``tryfirst``) and add ``knn/top1`` and ``probe/top1`` (``probe/train_top1``,
``probe/loss``), which the trackers then log at the run's step.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import hookimpl

if TYPE_CHECKING:
    import torch

    from .run import RunContext


@contextmanager
def preserved_rng(device: Any):
    """Run the body with torch's CPU (and ``device``'s CUDA) generator restored afterwards.

    An evaluation draws random numbers (a DataLoader takes a seed from the global generator);
    restoring the state keeps the views of the following steps what they would have been.
    """
    import torch

    devices = [device] if getattr(device, "type", None) == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def _labelled(run: RunContext) -> bool:
    return run.data is not None and run.data.labelled


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class KnnMonitor:
    """Weighted kNN top-1 of the encoder every ``eval.knn_every`` epochs (``knn/top1``)."""

    def __init__(self) -> None:
        self.warned = False

    @hookimpl
    def ssl_run_start(self, run: RunContext) -> None:
        self.warned = False

    @hookimpl(tryfirst=True)
    def ssl_epoch_end(self, run: RunContext, epoch: int, metrics: dict[str, float]) -> None:
        every = run.config.eval.knn_every
        if not every or epoch % every:
            return
        if not _labelled(run):
            if not self.warned:
                _say("note: eval.knn_every needs labelled data with a held-out split; no kNN")
                self.warned = True
            return
        from .knn import knn_eval

        with preserved_rng(run.device):
            top1 = knn_eval(
                run.encoder,
                run.data,
                image_size=run.config.data.image_size,
                device=run.device,
                k=run.config.eval.knn_k,
                temperature=run.config.eval.knn_temperature,
            )
        metrics["knn/top1"] = top1
        _say(f"epoch {epoch}: knn/top1 {top1:.4f}")


class LinearProbe:
    """A linear classifier trained online on detached encoder features (``probe/top1``).

    The practice of BYOL's and solo-learn's online classifier: at every training step the
    encoder's output on the first view is copied out of the graph by a forward hook, and one
    Adam step trains ``nn.Linear(D, classes)`` on it with the batch's labels. At epoch ends
    the probe is scored on the held-out split (evaluation views, encoder in eval mode).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.head: torch.nn.Linear | None = None
        self.optimizer: Any = None
        self.handle: Any = None
        self.features: torch.Tensor | None = None
        self.armed = False
        self.correct = 0
        self.seen = 0
        self.loss_sum = 0.0
        self.steps = 0

    @hookimpl
    def ssl_run_start(self, run: RunContext) -> None:
        self.reset()
        if not run.config.eval.probe:
            return
        if not _labelled(run) or not run.data.classes:
            _say("note: eval.probe needs labelled data with a held-out split; no probe")
            return
        import torch

        num_features = getattr(run.encoder, "num_features", None)
        if not isinstance(num_features, int):
            _say("note: eval.probe needs an encoder with an int `num_features`; no probe")
            return
        # The probe's initialization draws from its own seeded stream, not the run's.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run.config.trainer.seed)
            head = torch.nn.Linear(num_features, len(run.data.classes))
        self.head = head.to(run.device)
        self.optimizer = torch.optim.Adam(self.head.parameters(), lr=run.config.eval.probe_lr)
        self.handle = run.encoder.register_forward_hook(self._capture)
        self.armed = True

    def _capture(self, module: Any, inputs: Any, output: Any) -> None:
        # The first training-mode forward of a step is the online encoder on the first view;
        # evaluation passes run in eval mode and are not training inputs.
        if self.armed and module.training and hasattr(output, "detach"):
            self.features = output.detach().flatten(1).float().clone()
            self.armed = False

    @hookimpl
    def ssl_step_end(self, run: RunContext, step: int, metrics: dict[str, float]) -> None:
        if self.head is None:
            return
        features, self.features, self.armed = self.features, None, True
        batch = run.batch or {}
        labels = batch.get("label")
        if features is None or labels is None:
            return
        import torch
        import torch.nn.functional as F

        labels = labels.to(features.device, torch.int64)
        if features.shape[0] != labels.shape[0]:
            if features.shape[0] % labels.shape[0]:
                return  # not one feature per image of the batch (or per view): skip
            # views concatenated in one forward: each image's label for each of its views
            labels = labels.repeat(features.shape[0] // labels.shape[0])
        keep = labels >= 0
        if not bool(keep.any()):
            return
        features, labels = features[keep], labels[keep]
        self.head.train()
        with torch.enable_grad():
            logits = self.head(features)
            loss = F.cross_entropy(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.correct += int((logits.detach().argmax(1) == labels).sum())
        self.seen += int(labels.shape[0])
        self.loss_sum += float(loss.detach())
        self.steps += 1

    @hookimpl(tryfirst=True)
    def ssl_epoch_end(self, run: RunContext, epoch: int, metrics: dict[str, float]) -> None:
        if self.head is None:
            return
        import torch

        from .loader import extract_features

        with preserved_rng(run.device):
            features, labels = extract_features(
                run.encoder, run.data.val, image_size=run.config.data.image_size, device=run.device
            )
        self.head.eval()
        with torch.no_grad():
            predicted = self.head(features.to(run.device)).argmax(1).cpu()
        top1 = float((predicted == labels).float().mean()) if len(labels) else 0.0
        metrics["probe/top1"] = top1
        if self.steps:
            metrics["probe/train_top1"] = self.correct / max(self.seen, 1)
            metrics["probe/loss"] = self.loss_sum / self.steps
        self.correct, self.seen, self.loss_sum, self.steps = 0, 0, 0.0, 0
        _say(f"epoch {epoch}: probe/top1 {top1:.4f}")

    @hookimpl
    def ssl_run_end(self, run: RunContext, status: str, metrics: dict[str, float]) -> None:
        if self.handle is not None:
            self.handle.remove()
        self.reset()
