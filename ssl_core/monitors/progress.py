"""Progress of a run: a live bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from ssl_core import hookimpl

if TYPE_CHECKING:
    from ssl_core.training.run import RunContext


def _eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_metrics(metrics: dict[str, float]) -> str:
    parts = []
    for key, value in metrics.items():
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " ".join(parts)


class ProgressReporter:
    """Shows loss, img/s and ETA; a rich bar when stderr is a terminal."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.task: Any = None
        self.start = 0.0
        self.last_images = 0
        self.last_time = 0.0

    @hookimpl
    def ssl_run_start(self, run: RunContext) -> None:
        self.start = self.last_time = time.perf_counter()
        self.last_images = 0
        if sys.stderr.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("train", total=run.total_steps, status="")
        else:
            print(
                f"training {run.total_steps} steps ({run.steps_per_epoch}/epoch) on {run.device}",
                file=sys.stderr,
            )

    @hookimpl
    def ssl_step_end(self, run: RunContext, step: int, metrics: dict[str, float]) -> None:
        every = run.config.trainer.log_every
        if step % every and step != run.total_steps:
            if self.bar is not None:
                self.bar.update(self.task, completed=step)
            return
        now = time.perf_counter()
        images = step * run.batch_size
        rate = (images - self.last_images) / max(now - self.last_time, 1e-9)
        self.last_images, self.last_time = images, now
        eta = (run.total_steps - step) * run.batch_size / max(rate, 1e-9)
        shown = {"loss": metrics["loss"], "img/s": round(rate, 1)}
        if self.bar is not None:
            status = f"loss {metrics['loss']:.4f}  {rate:.1f} img/s"
            self.bar.update(self.task, completed=step, status=status)
        else:
            epoch = run.epoch + 1
            print(
                f"step {step}/{run.total_steps} epoch {epoch} {format_metrics(shown)} "
                f"eta {_eta(eta)}",
                file=sys.stderr,
                flush=True,
            )

    @hookimpl
    def ssl_run_end(self, run: RunContext, status: str, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
