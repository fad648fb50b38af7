"""``ssl run ... --estimate``: what a run will cost, from a handful of timed steps.

Everything is built as for the run (data, view generator, model, optimizer) in a temporary
folder, then timed: the input pipeline alone (the DataLoader with its workers, the view
generator's device part), and the engine's training step on one batch. No lifecycle hook is
called, so nothing is tracked and no checkpoint is written; nothing is left on disk.

The figures: images per second, time per epoch and for the whole run (with the kNN
evaluations, from the encoder's inference speed), peak memory, and which side is the
bottleneck with what to change. The rate model is the engine's: without DataLoader workers
loading and the step run one after the other; with workers the slower of the two sets the
pace (optimistic when training on the CPU with workers, which then share the model's cores;
the CPU default is no workers). On two CPU cores the estimate was within 15 % of the rate of
real 50-step runs (``python -m benchmarks --only estimate`` compares them).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ssl_core.config import Selection
from ssl_core.plugins import Plugins

#: Steps run before timing (allocations, first kernel launches, compilation).
WARMUP_STEPS = 2
#: Steps (and loader batches) timed.
TIMED_STEPS = 5


@dataclass
class Estimate:
    """Seconds per optimizer step for each part, and what they add up to."""

    device: str
    batch_size: int  # images per optimizer step, every process
    steps_per_epoch: int
    total_steps: int
    epochs: int
    workers: int
    build_s: float
    load_s: float  # the loader, per optimizer step (its workers in parallel when there are)
    views_s: float  # the view generator's device part, per optimizer step
    model_s: float  # forward, backward, optimizer, target update, per optimizer step
    knn_s: float  # one kNN evaluation
    knn_evaluations: int
    peak_memory: str
    timed_steps: int = TIMED_STEPS
    warmup_steps: int = WARMUP_STEPS
    advice: list[str] = field(default_factory=list)

    @property
    def pipeline_s(self) -> float:
        return self.load_s + self.views_s

    @property
    def step_s(self) -> float:
        """Seconds per optimizer step, as the training loop runs it."""
        if self.workers:
            # workers prepare the next batches while the step runs; views stay on the device
            return max(self.load_s, self.views_s + self.model_s)
        return self.pipeline_s + self.model_s

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.step_s

    @property
    def bottleneck(self) -> str:
        if self.workers:
            return "input" if self.load_s > self.views_s + self.model_s else "model"
        return "input" if self.pipeline_s > self.model_s else "model"


def estimate(
    config: DictConfig,
    selection: Selection,
    plugins: Plugins,
    timed_steps: int = TIMED_STEPS,
    warmup_steps: int = WARMUP_STEPS,
) -> Estimate:
    """Build the run of ``config`` and time it; nothing is trained, tracked or kept.

    ``warmup_steps`` untimed steps, then ``timed_steps`` (and as many loader batches) timed:
    each part's median is taken.
    """
    from ssl_core.training.engine import Trainer
    from ssl_core.training.stopping import StopRequest

    config = OmegaConf.create(OmegaConf.to_container(config))
    with (
        tempfile.TemporaryDirectory(prefix="ssl-estimate-") as tmp,
        plugins.running(config, [component for _, component in selection.items()]),
    ):
        config.output_dir = f"{tmp}/run"
        config.resume.path = None
        trainer = Trainer(config, selection, plugins, StopRequest())
        trainer.notify = lambda hook, **kwargs: None  # no tracker, monitor or progress
        with trainer.scope:
            started = time.perf_counter()
            trainer.build()
            build_s = time.perf_counter() - started
            return _measure(trainer, build_s, timed_steps, warmup_steps)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _measure(trainer: Any, build_s: float, timed: int, warmup: int) -> Estimate:
    import torch

    run, config = trainer.run, trainer.config
    device, accumulate = run.device, trainer.accumulate
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    load_s, batch = _time_loader(trainer.loader, timed)
    from ssl_core.data.loader import to_device

    on_device = to_device(batch, device)
    views_s = _median_time(
        lambda: trainer.answer("view_generator", "ssl_make_views", batch=on_device), device, timed
    )
    run.model.train()
    for _ in range(warmup * accumulate):
        trainer.train_step(batch)
    step_s = _median_time(
        lambda: [trainer.train_step(batch) for _ in range(accumulate)], device, timed
    )
    knn_s, evaluations = _knn_cost(trainer, batch)
    result = Estimate(
        device=str(device),
        batch_size=run.batch_size,
        steps_per_epoch=run.steps_per_epoch,
        total_steps=run.total_steps,
        epochs=math.ceil(run.total_steps / max(run.steps_per_epoch, 1)),
        workers=trainer.loader.num_workers,
        build_s=build_s,
        load_s=load_s * accumulate,
        views_s=views_s * accumulate,
        model_s=max(step_s - views_s * accumulate, 0.0),
        knn_s=knn_s,
        knn_evaluations=evaluations,
        peak_memory=_peak_memory(device),
        timed_steps=timed,
        warmup_steps=warmup,
    )
    result.advice = advise(result, config, trainer.plugins.registry, trainer.selection)
    return result


def _median_time(call: Any, device: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        _sync(device)
        started = time.perf_counter()
        call()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _time_loader(loader: Any, timed: int) -> tuple[float, dict[str, Any]]:
    """Seconds per batch of the loader in its steady state, and its first batch.

    Timed from the first batch on: starting the workers is a cost of each epoch's first step
    only. With workers the batches arrive as fast as they make them together.
    """
    sampler = loader.batch_sampler
    sampler.set_epoch(0)
    wanted = min(timed, max(sampler.batches_per_epoch - 1, 0))
    iterator = iter(loader)
    started = time.perf_counter()
    first = next(iterator)
    if not wanted:
        return time.perf_counter() - started, first
    started = time.perf_counter()
    for _ in range(wanted):
        next(iterator)
    return (time.perf_counter() - started) / wanted, first


def _knn_cost(trainer: Any, batch: dict[str, Any]) -> tuple[float, int]:
    """Seconds of one kNN evaluation (the encoder over every image) and how many the run has."""
    import torch

    from ssl_core.data.transforms import normalize

    run, config = trainer.run, trainer.config
    data = run.data
    if not (data is not None and data.labelled):
        return 0.0, 0
    evaluations = 2 if config.eval.knn else 0
    if config.eval.knn_every:
        evaluations += math.ceil(run.total_steps / max(run.steps_per_epoch, 1)) // (
            config.eval.knn_every
        )
    if not evaluations:
        return 0.0, 0
    views = trainer.answer("view_generator", "ssl_make_views", batch=batch)
    x = normalize(views[0].to(run.device))
    run.encoder.eval()
    with torch.no_grad():
        per_batch = _median_time(lambda: run.encoder(x), run.device, repeat=3)
    run.encoder.train()
    images = len(data.train) + len(data.val or [])
    return per_batch * images / x.shape[0], evaluations


def _peak_memory(device: Any) -> str:
    import torch

    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        return f"{peak:.2f} GiB of {total:.0f} GiB on {device} (allocated by torch)"
    with contextlib.suppress(OSError):
        for line in open("/proc/self/status"):  # noqa: SIM115
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) / 2**20:.2f} GiB resident (this process's peak)"
    return "unknown"


def advise(result: Estimate, config: DictConfig, registry: Any, selection: Selection) -> list[str]:
    """What to change, for the bottleneck found."""
    trainer = config.trainer
    device = result.device.split(":")[0]
    tips = []
    if result.bottleneck == "input":
        if not result.workers and device != "cpu":
            tips.append("trainer.num_workers=N (N CPU cores) loads and makes views in parallel")
        elif result.workers:
            tips.append(
                f"more DataLoader workers than {result.workers} (trainer.num_workers) if cores "
                "are free"
            )
        with contextlib.suppress(Exception):
            made_here = registry.auto("view_generator", device)
            if made_here.name != selection.view_generator.name:
                tips.append(
                    f"augment={made_here.name} makes views on the {device} (it is marked for it)"
                )
        tips.append("fewer or smaller views (data.image_size, the view generator's options)")
    else:
        if device == "cuda" and str(trainer.precision) == "32":
            tips.append("trainer.precision=bf16 (autocast) runs the model faster on recent GPUs")
        if not trainer.channels_last:
            tips.append("trainer.channels_last=true for convolutional backbones")
        if device == "cuda":
            tips.append(
                "a larger trainer.batch_size uses the GPU better, if memory allows "
                f"(peak now {result.peak_memory.split(' on ')[0]})"
            )
        if device == "cpu":
            tips.append("a GPU (trainer.device=cuda): on a CPU the model is the bottleneck")
        if not trainer.compile:
            tips.append("trainer.compile=true after a first short run")
    return tips


def _duration(seconds: float) -> str:
    if seconds < 9.95:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else _duration(seconds)


def describe(result: Estimate) -> str:
    """The estimate as the lines ``ssl run --estimate`` prints."""
    share = result.pipeline_s / max(result.pipeline_s + result.model_s, 1e-12)
    loading = (
        f"{result.workers} workers" if result.workers else "in the training process, no workers"
    )
    run_s = result.total_steps * result.step_s
    knn = ""
    if result.knn_evaluations:
        knn = (
            f" + {result.knn_evaluations} kNN evaluations x ~{_duration(result.knn_s)} = "
            f"{_duration(run_s + result.knn_evaluations * result.knn_s)}"
        )
    side = "the input pipeline" if result.bottleneck == "input" else "the model"
    lines = [
        f"estimate on {result.device}, {result.batch_size} images per optimizer step "
        f"(from {result.timed_steps} timed steps after {result.warmup_steps} warm-up; built in "
        f"{result.build_s:.1f} s)",
        f"  images/s          {result.images_per_s:.1f}",
        f"  per step          {_ms(result.step_s)}: input pipeline {_ms(result.pipeline_s)} "
        f"(loading {_ms(result.load_s)}, {loading}; views on the device "
        f"{_ms(result.views_s)}), model {_ms(result.model_s)}",
        f"  per epoch         {_duration(result.steps_per_epoch * result.step_s)} "
        f"({result.steps_per_epoch} steps)",
        f"  whole run         {_duration(run_s)} ({result.total_steps} steps, "
        f"{result.epochs} epochs){knn}",
        f"  peak memory       {result.peak_memory}",
        f"  bottleneck        {side} ({share:.0%} of a step is input)",
    ]
    lines += [f"  to go faster      {tip}" for tip in result.advice[:1]]
    lines += [f"                    {tip}" for tip in result.advice[1:]]
    return "\n".join(lines)
