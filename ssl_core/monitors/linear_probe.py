"""The ``linear-probe`` plugin: a linear classifier trained online on detached features."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ssl_core import hookimpl
from ssl_core.monitors.common import labelled, preserved_rng, say

if TYPE_CHECKING:
    import torch

    from ssl_core.training.run import RunContext


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
        if not labelled(run) or not run.data.classes:
            say("note: eval.probe needs labelled data with a held-out split; no probe")
            return
        import torch

        num_features = getattr(run.encoder, "num_features", None)
        if not isinstance(num_features, int):
            say("note: eval.probe needs an encoder with an int `num_features`; no probe")
            return
        from ssl_core.evaluation.protocol import linear_head

        # The probe's initialization draws from its own seeded stream, not the run's.
        head = linear_head(num_features, len(run.data.classes), run.config.trainer.seed)
        self.head = head.to(run.device)
        self.optimizer = torch.optim.Adam(self.head.parameters(), lr=run.config.eval.probe_lr)
        self.handle = run.encoder.register_forward_hook(self._capture)
        self.armed = True

    def _capture(self, module: Any, inputs: Any, output: Any) -> None:
        # The first training-mode forward of a step is the online encoder on the first view;
        # evaluation passes run in eval mode and are not training inputs.
        if self.armed and module.training and hasattr(output, "detach"):
            import torch

            # one copy, in float32 whatever the precision of the forward
            self.features = output.detach().flatten(1).to(torch.float32, copy=True)
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

        from ssl_core.data.features import extract_features

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
        say(f"epoch {epoch}: probe/top1 {top1:.4f}")

    @hookimpl
    def ssl_run_end(self, run: RunContext, status: str, metrics: dict[str, float]) -> None:
        if self.handle is not None:
            self.handle.remove()
        self.reset()
