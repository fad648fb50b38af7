"""The ``knn-monitor`` plugin: the weighted kNN top-1 of the encoder every few epochs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ssl_core import hookimpl
from ssl_core.monitors.common import labelled, preserved_rng, say

if TYPE_CHECKING:
    from ssl_core.training.run import RunContext


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
        if not labelled(run):
            if not self.warned:
                say("note: eval.knn_every needs labelled data with a held-out split; no kNN")
                self.warned = True
            return
        from ssl_core.evaluation.knn import knn_eval

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
        run.extra["knn_top1_at_step"] = (run.step, top1)  # the final kNN of these weights
        say(f"epoch {epoch}: knn/top1 {top1:.4f}")
