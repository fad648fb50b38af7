"""``ssl run --multirun``: every combination of comma-separated values, one run after another.

``ssl run --multirun backbone=resnet18,resnet34 byol.tau_base=0.99,0.996`` makes four runs,
the last key varying fastest. Every combination's config is resolved before the first run
starts, so a typo fails at once. Each run is named after its values
(``backbone=resnet34 byol.tau_base=0.99``) and writes to ``runs/sweep-<time>/<n>`` (or
``<output_dir>/<n>``); all go to one MLflow experiment, ready for ``ssl compare``.

The number of runs is said before anything else; a sweep of more than ``MAX_RUNS`` runs is
refused unless ``--max-runs N`` allows it (each config is resolved first, so a huge product
would spend minutes on that alone, and more on the runs).
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ssl_core.errors import UserError

#: Runs a sweep may have without ``--max-runs``.
MAX_RUNS = 1000


@dataclass
class Combination:
    """One run of a sweep: its overrides and what sets it apart from the others."""

    overrides: list[str]
    swept: list[tuple[str, str]]

    @property
    def label(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.swept)


def axis_sizes(args: Sequence[str]) -> list[int]:
    """How many values each swept argument has (``key=a,b,c`` → 3)."""
    sizes = []
    for arg in args:
        _, sep, value = arg.partition("=")
        if sep and "," in value:
            sizes.append(len(value.split(",")))
    return sizes


def count_runs(args: Sequence[str], max_runs: int = MAX_RUNS) -> int:
    """The number of runs of a sweep, said on stderr; too many is a :class:`UserError`."""
    import math

    sizes = axis_sizes(args)
    total = math.prod(sizes)
    shown = " x ".join(str(n) for n in sizes) or "1"
    if total > max_runs:
        raise UserError(
            f"the sweep has {total} runs ({shown}), more than the limit of {max_runs}; sweep "
            f"fewer values, or pass --max-runs {total} to run them all"
        )
    print(f"sweep: {total} runs ({shown}); checking every config first", file=sys.stderr)
    return total


def expand(args: Sequence[str]) -> list[Combination]:
    """The cartesian product of ``key=v1,v2,...`` arguments (others are kept in every run).

    :raises UserError: on an empty value in a list (``key=a,,b``).
    """
    axes: list[list[tuple[str, str, bool]]] = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or "," not in value:
            axes.append([(arg, "", False)])
            continue
        values = [v.strip() for v in value.split(",")]
        if not all(values):
            raise UserError(f"empty value in '{arg}'; write key=a,b,c")
        axes.append([(f"{key}={v}", v, True) for v in values])
    combos = []
    for choice in itertools.product(*axes):
        overrides = [item for item, _, _ in choice]
        swept = [(item.partition("=")[0].strip(), v) for item, v, is_swept in choice if is_swept]
        combos.append(Combination(overrides, swept))
    return combos


def plan(
    args: Sequence[str], registry: Any, base: Sequence[Any] = ()
) -> list[tuple[Combination, Any, Any]]:
    """Resolve every combination's config: ``(combination, config, selection)`` in run order.

    Runs get a name from their swept values unless ``tracking.run_name`` is given, and their
    own ``output_dir`` under one sweep directory. ``base`` are config layers under the
    command line (``--config``, ``--from``; see :mod:`ssl_core.config.files`), not swept.
    """
    from ssl_core.config.files import Layer, build_layered
    from ssl_core.evaluation.arguments import raw_override

    combos = expand(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = raw_override(args, "output_dir", None) or f"runs/sweep-{stamp}"
    named = raw_override(args, "tracking.run_name", None) is not None
    width = len(str(len(combos)))
    planned = []
    for index, combo in enumerate(combos, start=1):
        extra = [f"output_dir={root}/{index:0{width}d}"]
        if not named:
            name = combo.label or f"sweep-{stamp}"
            extra.append(f"tracking.run_name={name}")
        overrides = [a for a in combo.overrides if not a.startswith("output_dir=")]
        cfg, selection = build_layered([*base, Layer(None, overrides + extra)], registry)
        planned.append((combo, cfg, selection))
    return planned


def run_sweep(
    args: Sequence[str],
    plugins: Any,
    *,
    print_config: bool = False,
    base: Sequence[Any] = (),
    max_runs: int = MAX_RUNS,
) -> int:
    """Run every combination in sequence; exit code 1 when a run failed, else 0.

    A run that fails with a user-facing error (e.g. a non-finite loss) is reported and the
    sweep goes on; configs were all checked before the first run.

    :raises UserError: when the sweep has more than ``max_runs`` runs (before any work).
    """
    from ssl_core.config import to_yaml

    count_runs(args, max_runs)
    planned = plan(args, plugins.registry, base)
    total = len(planned)
    if print_config:
        for index, (combo, cfg, _) in enumerate(planned, start=1):
            print(f"# run {index}/{total}: {combo.label}")
            print(to_yaml(cfg), end="")
        return 0
    from ssl_core.training.engine import train

    failed: list[str] = []
    for index, (combo, cfg, selection) in enumerate(planned, start=1):
        print(
            f"sweep: run {index}/{total}: {combo.label or cfg.tracking.run_name}", file=sys.stderr
        )
        try:
            metrics = train(cfg, selection, plugins)
        except UserError as exc:
            print(f"sweep: run {index}/{total} failed: {exc}", file=sys.stderr)
            failed.append(combo.label)
            continue
        summary = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        print(f"done: {cfg.output_dir} {summary}".rstrip())
    cfg = planned[0][1]
    where = f"experiment={cfg.tracking.experiment} tracking.uri={cfg.tracking.uri}"
    print(
        f"sweep: {total - len(failed)}/{total} runs finished; compare them with: "
        f"ssl compare {where}",
        file=sys.stderr,
    )
    for label in failed:
        print(f"sweep: failed: {label}", file=sys.stderr)
    return 1 if failed else 0
