"""End to end: steady-state images per second of a whole run against the step alone.

The run is what ``ssl run`` does (:func:`ssl_core.engine.train` with every installed plugin:
MLflow tracking to a temporary SQLite store, progress, the default view generator and worker
count), on ``data=synthetic`` for one epoch. A plugin registered for the benchmark notes the
time of every ``ssl_step_end``; the first steps (workers starting, first allocations) are left
out, and the rate is taken over the rest. The step-only rate is the engine's step on one batch
again and again (:func:`step.step_only_rate`), measured in blocks before and after every run;
each run is compared with the mean of the two blocks beside it, so that a slow spell of a
shared machine does not pass for pipeline cost. A ratio near 1 means loading, view generation and bookkeeping overlap with
compute instead of adding to it.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from typing import Any

from ssl_core import hookimpl

from .common import Setting, log, median, quiet, table
from .step import step_only_rate


class StepClock:
    """Plugin noting when each optimizer step ended."""

    def __init__(self) -> None:
        self.times: list[float] = []

    @hookimpl
    def ssl_step_end(self, run: Any, step: int, metrics: dict[str, float]) -> None:
        self.times.append(time.perf_counter())


def run_rate(setting: Setting, warmup: int, measured: int, extra: list[str]) -> float:
    """Steady-state images per second of a tracked run of ``warmup + measured`` steps."""
    from ssl_core.config import build_config
    from ssl_core.plugins import get_plugins
    from ssl_core.training.engine import train

    clock = StepClock()
    plugins = get_plugins(extra=[("benchmark-clock", clock)])
    steps = warmup + measured
    # one epoch holds every step; val_fraction 0.25 of the samples are held out
    samples = math.ceil(steps * setting.batch_size / 0.75) + setting.batch_size
    with tempfile.TemporaryDirectory(prefix="ssl-bench-") as tmp:
        args = [
            *setting.overrides(),
            f"data.num_samples={samples}",
            "trainer.epochs=1",
            f"trainer.max_steps={steps}",
            f"output_dir={tmp}/run",
            f"tracking.uri=sqlite:///{tmp}/mlflow.db",
            "tracking.experiment=benchmark",
            *extra,
        ]
        config, selection = build_config(args, plugins.registry)
        # MLflow puts a SQLite store's artifacts under ./mlruns: in the temporary folder.
        here = os.getcwd()
        os.chdir(tmp)
        try:
            with quiet():
                train(config, selection, plugins)
        finally:
            os.chdir(here)
    times = clock.times
    if len(times) != steps:
        raise RuntimeError(f"expected {steps} step ends, saw {len(times)}")
    return measured * setting.batch_size / (times[-1] - times[warmup - 1])


def measure(setting: Setting) -> list[list[str]]:
    """Runs and step-only blocks in turn; each run against the mean of the blocks beside it."""
    warmup, measured = (2, 4) if setting.quick else (5, 20)
    rounds = 1 if setting.quick else 2
    step_steps = 2 if setting.quick else 6
    variants = [("defaults", [])]
    if not setting.quick:
        # the worker count the default did not pick, to show what it would cost
        other = "1" if setting.device == "cpu" else "0"
        variants.append((f"trainer.num_workers={other}", [f"trainer.num_workers={other}"]))
    log(f"end to end: {rounds} rounds of runs of {warmup} + {measured} steps, step-only between")
    steps = [step_only_rate(setting, [], step_steps)]
    rates: dict[str, list[float]] = {label: [] for label, _ in variants}
    ratios: dict[str, list[float]] = {label: [] for label, _ in variants}
    for _ in range(rounds):
        for label, extra in variants:
            rate = run_rate(setting, warmup, measured, extra)
            steps.append(step_only_rate(setting, [], step_steps))
            rates[label].append(rate)
            ratios[label].append(rate / ((steps[-2] + steps[-1]) / 2))
    rows = [
        [
            f"engine step only ({len(steps)} blocks of {step_steps} steps, median)",
            f"{median(steps):.0f} ({min(steps):.0f}–{max(steps):.0f})",
            "1.00",
        ]
    ]
    for label, _ in variants:
        ratio = f"{median(ratios[label]):.2f}"
        rows.append(
            [
                f"ssl run, {label}, steps {warmup + 1}–{warmup + measured}"
                + (f" (median of {rounds})" if rounds > 1 else ""),
                f"{median(rates[label]):.0f}",
                f"**{ratio}**" if label == "defaults" else ratio,
            ]
        )
    return rows


def report(setting: Setting, rows: list[list[str]]) -> str:
    heading = (
        f"### End to end: BYOL, {setting.backbone}, {setting.image_size} px, batch "
        f"{setting.batch_size}, {setting.device}, synthetic data, tracked in MLflow\n\n"
    )
    return heading + table(["measure", "img/s", "vs step only (blocks beside it)"], rows)
