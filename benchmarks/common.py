"""What every benchmark shares: the machine, the engine set-up, timing and markdown tables."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Plugins that observe a run (trackers, progress, monitors); left out where a benchmark
#: times the training step alone.
OBSERVERS = ("mlflow", "progress", "knn-monitor", "linear-probe", "health-monitor")


@dataclass
class Setting:
    """What a benchmark trains: backbone, input size, batch and device."""

    device: str
    backbone: str
    image_size: int
    batch_size: int
    precision: str = "32"
    quick: bool = False
    extra: list[str] = field(default_factory=list)

    def overrides(self) -> list[str]:
        """``ssl run`` overrides for this setting (synthetic data, no kNN)."""
        return [
            "method=byol",
            f"backbone={self.backbone}",
            "data=synthetic",
            f"data.image_size={self.image_size}",
            f"trainer.batch_size={self.batch_size}",
            f"trainer.device={self.device}",
            f"trainer.precision={self.precision}",
            "eval.knn=false",
            *self.extra,
        ]


def log(message: str) -> None:
    """Progress of the suite, on stderr so that stdout is only the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> list[tuple[str, str]]:
    """The hardware and software the figures were taken on."""
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):  # noqa: SIM115
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError):
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    rows = [
        ("CPU", f"{cpu}, {len(os.sched_getaffinity(0))} cores usable{memory}"),
        ("torch threads", str(torch.get_num_threads())),
        ("software", f"Python {platform.python_version()}, torch {torch.__version__}"),
    ]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        rows.append(("GPU", f"{props.name}, {props.total_memory / 2**30:.0f} GiB"))
    return rows


def synchronize(device: Any) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(
    cases: dict[str, Callable[[], Any]], rounds: int, repeat: int, device: Any = "cpu"
) -> dict[str, list[float]]:
    """Seconds per call of each case: ``rounds`` rounds, each timing ``repeat`` calls per case.

    The cases take turns within every round, so a slow spell of a shared machine falls on all
    of them rather than on one; report the median over rounds.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, call in cases.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(repeat):
                call()
            synchronize(device)
            times[name].append((time.perf_counter() - start) / repeat)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """The relative range of ``values`` around their median, e.g. ``±3%``."""
    mid = statistics.median(values)
    if len(values) < 2 or mid == 0:
        return "-"
    return f"±{(max(values) - min(values)) / 2 / mid:.0%}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def rss_mib(field: str = "VmHWM") -> float:
    """This process's resident memory in MiB: ``VmHWM`` the peak so far, ``VmRSS`` now.

    Read from ``/proc/self/status`` (Linux): unlike ``getrusage``'s ``ru_maxrss``, the peak
    starts afresh in a new program and does not carry over the parent's size at ``fork``.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Hide what a run prints (progress lines, MLflow notices) while a benchmark times it."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield


def sample_batch(setting: Setting, extra: Sequence[str] = ()) -> dict[str, Any]:
    """The first training batch of ``setting``'s data and view generator; no model is built."""
    from ssl_core.config import build_config
    from ssl_core.data.loader import build_train_loader
    from ssl_core.plugins import get_plugins

    plugins = get_plugins(blocked=set(OBSERVERS))
    config, selection = build_config([*setting.overrides(), *extra], plugins.registry)
    with plugins.running(config, [c for _, c in selection.items()]):
        data = plugins.hook.ssl_build_dataset()
        transform = plugins.hook.ssl_sample_transform()
    loader = build_train_loader(
        data.train,
        transform,
        batch_size=setting.batch_size,
        num_workers=0,
        seed=0,
        pin_memory=False,
    )
    loader.batch_sampler.set_epoch(0)
    return next(iter(loader))


@contextlib.contextmanager
def engine_trainer(
    setting: Setting, extra: Sequence[str] = (), observers: bool = False
) -> Iterator[Any]:
    """A built :class:`ssl_core.training.engine.Trainer` for ``setting`` and one batch from its loader.

    Yields ``(trainer, batch)``. Without ``observers`` the trackers, progress and monitors
    are not loaded: what is left is the training step itself.
    """
    from ssl_core.config import build_config
    from ssl_core.plugins import get_plugins
    from ssl_core.training.engine import Trainer
    from ssl_core.training.stopping import StopRequest

    plugins = get_plugins(blocked=None if observers else set(OBSERVERS))
    with tempfile.TemporaryDirectory(prefix="ssl-bench-") as tmp:
        args = [*setting.overrides(), *extra, f"output_dir={tmp}/run", "trainer.num_workers=0"]
        args.append(f"tracking.uri=sqlite:///{tmp}/mlflow.db")
        config, selection = build_config(args, plugins.registry)
        with plugins.running(config, [c for _, c in selection.items()]):
            with quiet():
                trainer = Trainer(config, selection, plugins, StopRequest())
                trainer.build()
                batch = next(iter(trainer.loader))
            yield trainer, batch


def loader_rate(
    items: Any, transform: Any, *, batch: int, workers: int, batches: int, warmup: int,
    pin_memory: bool = False,
) -> float:  # fmt: skip
    """Samples per second out of the engine's training loader with ``workers`` processes,
    after ``warmup`` batches (those come while the workers start)."""
    from ssl_core.data.loader import build_train_loader

    loader = build_train_loader(
        items,
        transform,
        batch_size=batch,
        num_workers=workers,
        seed=0,
        pin_memory=pin_memory,
    )
    loader.batch_sampler.set_epoch(0)
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    elapsed = time.perf_counter() - start
    del iterator, loader
    return batch * batches / elapsed
