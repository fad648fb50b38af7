"""The ``health-monitor`` plugin: representation health every few steps, and the collapse guard.

Every ``eval.health_every`` optimizer steps, forward hooks copy out of the graph the features
that the encoder (and each projection the method exposes, see :func:`watched_modules`) gives
in the step's first training-mode forward passes. The health metrics of the first view
(:mod:`ssl_core.monitors.health_metrics`), and the alignment of the first two, are added to
the step's metrics as ``health/<metric>`` (encoder) and ``health/<projection>/<metric>``, so
the trackers log them at the run's step; ``health/alarm`` is the guard's level (0 healthy, 1
warning, 2 collapse).

The guard (:mod:`ssl_core.monitors.collapse`, ``trainer.collapse``) warns in one line when a
threshold is crossed for a window of checks, and with ``stop`` ends the run as FAILED through
:meth:`RunContext.fail`, naming the last checkpoint written before the collapse began, which
it keeps from the checkpoint rotation (``RunContext.keep_checkpoint``).

The monitor never changes the training: the copies are detached, nothing draws a random number,
and the metrics are computed under ``no_grad`` on the first process only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ssl_core import hookimpl
from ssl_core.errors import PluginError
from ssl_core.monitors.collapse import WINDOW, CollapseGuard, describe
from ssl_core.monitors.common import say

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from ssl_core.training.run import RunContext

#: Training-mode forward passes of a watched module kept per check: the first two views.
CAPTURES = 2


def watched_modules(model: Any, encoder: Any) -> dict[str, Any]:
    """``{name: module}`` whose outputs the monitor watches: the encoder, then projections.

    A method exposes its projections with a method ``health_modules()`` on its model returning
    ``{name: module}`` (names of letters, digits, ``_`` and ``-``); without one, a submodule
    named ``projector`` is watched when the model has it.

    :raises PluginError: when ``health_modules()`` returns something else.
    """
    from torch import nn

    watched: dict[str, Any] = {"encoder": encoder}
    declared = getattr(model, "health_modules", None)
    if callable(declared):
        modules = declared()
        ok = isinstance(modules, dict) and all(
            isinstance(k, str)
            and k
            and k.replace("_", "").replace("-", "").isalnum()
            and k != "encoder"
            and isinstance(m, nn.Module)
            for k, m in modules.items()
        )
        if not ok:
            raise PluginError(
                f"{type(model).__name__}.health_modules() returned {modules!r}; it must return "
                "{name: nn.Module} with names of letters, digits, '_' and '-' (not 'encoder')"
            )
        watched.update(modules)
    elif isinstance(getattr(model, "projector", None), nn.Module):
        watched["projector"] = model.projector
    return watched


def metric_key(module: str, metric: str) -> str:
    return f"health/{metric}" if module == "encoder" else f"health/{module}/{metric}"


class HealthMonitor:
    """Health metrics every ``eval.health_every`` steps, logged as ``health/*``; the guard."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.every = 0
        self.handles: list[Any] = []
        self.captured: dict[str, list[torch.Tensor]] = {}
        self.armed = False
        self.guard: CollapseGuard | None = None
        self.action = "off"
        self.last_good: Path | None = None
        self.shown = 0  # the alarm level last told to the user

    @hookimpl
    def ssl_run_start(self, run: RunContext) -> None:
        self.reset()
        self.action = str(run.config.trainer.collapse)
        self.every = int(run.config.eval.health_every)
        if not self.every:
            if self.action != "off":
                say(f"note: trainer.collapse={self.action} needs eval.health_every > 0; no guard")
            return
        for name, module in watched_modules(run.model, run.encoder).items():
            self.captured[name] = []
            self.handles.append(module.register_forward_hook(self._capture(name)))
        self.guard = CollapseGuard() if self.action != "off" else None
        self.armed = (run.step + 1) % self.every == 0

    def _capture(self, name: str) -> Any:
        import torch

        def hook(module: Any, inputs: Any, output: Any) -> None:
            # Evaluation passes (kNN, probe) run in eval mode; a target network is another
            # module. A copy, not a view: nothing later in the step may change it.
            kept = self.captured[name]
            if self.armed and module.training and len(kept) < CAPTURES:
                if isinstance(output, torch.Tensor) and output.ndim >= 2:
                    kept.append(output.detach().flatten(1).to(torch.float32, copy=True))

        return hook

    @hookimpl(tryfirst=True)
    def ssl_step_end(self, run: RunContext, step: int, metrics: dict[str, float]) -> None:
        if not self.every:
            return
        self.armed = (step + 1) % self.every == 0
        # taken on every step: a step skipped for a non-finite loss left its captures behind
        captured = {name: list(kept) for name, kept in self.captured.items() if kept}
        for kept in self.captured.values():
            kept.clear()
        if step % self.every:
            return
        images = batch_images(run.batch)
        checks = {}
        for name, kept in captured.items():
            views = split_views(kept, images)
            if views is None:
                continue
            from ssl_core.monitors.health_metrics import health

            values = health(*views)
            checks[name] = (values, int(views[0].shape[0]))
            metrics.update({metric_key(name, k): v for k, v in values.items()})
        if self.guard is not None and checks:
            alarm = self.guard.observe(step, checks)
            metrics["health/alarm"] = float(alarm.level)
            self._act(run, step)

    def _act(self, run: RunContext, step: int) -> None:
        """Tell the user when the alarm changes; pin the last good checkpoint; stop if asked."""
        guard = self.guard
        alarm = guard.alarm
        if guard.suspect and run.keep_checkpoint is None and self.last_good is not None:
            run.keep_checkpoint = self.last_good
        if alarm.level == self.shown:
            return
        if alarm.level == 0:
            say(f"note: representation health recovered at step {step}")
            self.shown = 0
            if not guard.suspect:
                run.keep_checkpoint = None
            return
        self.shown = alarm.level
        kept = run.keep_checkpoint or self.last_good
        where = (
            f"last good checkpoint: {kept} (kept)"
            if kept is not None
            else "no checkpoint was written before it began"
        )
        line = f"{describe(alarm, step, WINDOW)}; {where}"
        if alarm.level >= 2 and self.action == "stop":
            run.fail(f"{line}; stopped by trainer.collapse=stop")
            return
        hint = "; trainer.collapse=stop ends such a run" if alarm.level >= 2 else ""
        say(f"warning: {line}{hint}")

    @hookimpl
    def ssl_checkpoint(self, run: RunContext, path: Path) -> None:
        # A checkpoint written while no watched module looks unhealthy is a good one.
        if self.guard is not None and not self.guard.suspect and self.guard.alarm.level == 0:
            self.last_good = path
            run.keep_checkpoint = None

    @hookimpl
    def ssl_run_end(self, run: RunContext, status: str, metrics: dict[str, float]) -> None:
        for handle in self.handles:
            handle.remove()
        self.reset()


def batch_images(batch: dict[str, Any] | None) -> int | None:
    """Images in the step's (last) micro-batch, from its labels; ``None`` when unknown."""
    labels = (batch or {}).get("label")
    shape = getattr(labels, "shape", None)
    return int(shape[0]) if shape else None


def split_views(kept: list[torch.Tensor], images: int | None) -> tuple[Any, ...] | None:
    """The first view's features and, when there, the second's, from a module's captures.

    The views went through the module one at a time (a capture per view) or concatenated (a
    capture of ``k x images`` rows): either way the first ``images`` rows are the first view
    and the next ``images`` the second.
    """
    import torch

    width = kept[0].shape[1]
    rows = torch.cat([k for k in kept if k.shape[1] == width])
    if images is None or images < 2 or rows.shape[0] < images:
        return (rows,) if rows.shape[0] >= 2 else None
    if rows.shape[0] >= 2 * images:
        return rows[:images], rows[images : 2 * images]
    return (rows[:images],)
