"""``ssl compare``: the runs of an experiment side by side, as a table, CSV, JSON or a plot.

One row per pretraining run: its name, the config keys whose values differ between the runs,
and its final metrics: loss (the last epoch's mean), kNN top-1, the online probe's top-1, the
top-1 of the latest ``ssl eval linear`` / ``ssl eval finetune`` of the run (evaluation runs
are found by their ``ssl.source_run_id`` tag), images per second, wall time, and the last
representation health check (``health/*``: std·√d, RankMe, uniformity, alignment of the
encoder, std·√d and RankMe of the first projection, the collapse guard's alarm). The plot shows
the loss, kNN and health curves of the runs on shared axes, each labelled by its differing
keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssl_core.errors import UserError

#: Params that differ between any two runs without saying anything about them.
IGNORED_PARAMS = ("tracking.run_name", "output_dir")
IGNORED_PREFIXES = ("resume.",)

#: Metric columns: name → (header, format). Shown when at least one run has the metric.
COLUMNS: dict[str, tuple[str, str]] = {
    "loss": ("loss", "{:.4f}"),
    "knn_top1": ("kNN top-1", "{:.4f}"),
    "probe_top1": ("probe top-1", "{:.4f}"),
    "linear_top1": ("linear top-1", "{:.4f}"),
    "linear_top5": ("linear top-5", "{:.4f}"),
    "linear_top1_init": ("linear top-1 at init", "{:.4f}"),
    "img_per_s": ("img/s", "{:.1f}"),
    "wall_time_s": ("wall time", "duration"),
    "health_std": ("std·√d", "{:.3f}"),
    "health_rankme": ("RankMe", "{:.1f}"),
    "health_uniform": ("uniformity", "{:.2f}"),
    "health_align": ("alignment", "{:.2f}"),
    "health_proj_std": ("proj std·√d", "{:.3f}"),
    "health_proj_rankme": ("proj RankMe", "{:.1f}"),
    "health_alarm": ("health", "alarm"),
}

#: Metrics where lower is better (``sort=`` puts the lowest first).
LOWER_IS_BETTER = ("loss", "wall_time_s", "health_alarm")

#: Health columns: the last logged value of each ``health/*`` metric (the encoder's, and the
#: first projection's), and the collapse guard's alarm (0 ok, 1 warning, 2 collapse).
HEALTH = {
    "health_std": "feature_std_ratio",
    "health_rankme": "rankme",
    "health_uniform": "uniform",
    "health_align": "align",
}
ALARMS = ("ok", "warning", "collapse")

KEYS = ("experiment", "runs", "sort", "tracking.uri", "tracking.experiment")


@dataclass
class Row:
    """One pretraining run as compared: identity, params, and summary metrics."""

    run_id: str
    name: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_value(name: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    fmt = COLUMNS[name][1] if name in COLUMNS else "{:.4g}"
    if fmt == "alarm":
        return ALARMS[min(max(int(value), 0), len(ALARMS) - 1)]
    return _duration(value) if fmt == "duration" else fmt.format(value)


def projection_of(metrics: dict[str, float]) -> str | None:
    """The first projection with health metrics (``health/<name>/...``), by name."""
    names = sorted(
        key.split("/")[1] for key in metrics if key.startswith("health/") and key.count("/") == 2
    )
    return names[0] if names else None


def _finetune_column(fraction: str) -> str:
    try:
        return f"finetune_top1@{float(fraction):g}"
    except ValueError:
        return "finetune_top1"


# --- collecting runs --------------------------------------------------------------------------


def _search(client: Any, experiment_ids: list[str]) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids,
            max_results=1000,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _is_eval(run: Any) -> bool:
    return "ssl.eval" in run.data.tags


def _is_ours(run: Any) -> bool:
    """A pretraining run of ``ssl run`` (its resolved config is in its params)."""
    return "method.name" in run.data.params


def _summary(run: Any, evals: list[Any]) -> dict[str, float]:
    m = run.data.metrics
    out: dict[str, float] = {}
    loss = m.get("epoch_loss", m.get("loss"))
    if loss is not None:
        out["loss"] = loss
    for name, key in (("knn_top1", "knn_top1"), ("probe_top1", "probe/top1")):
        if key in m:
            out[name] = m[key]
    if "img_per_s" in m:
        out["img_per_s"] = m["img_per_s"]
    for column, metric in HEALTH.items():
        if f"health/{metric}" in m:
            out[column] = m[f"health/{metric}"]
    projection = projection_of(m)
    for column, metric in (
        ("health_proj_std", "feature_std_ratio"),
        ("health_proj_rankme", "rankme"),
    ):
        if projection and f"health/{projection}/{metric}" in m:
            out[column] = m[f"health/{projection}/{metric}"]
    if "health/alarm" in m:
        out["health_alarm"] = m["health/alarm"]
    if run.info.end_time and run.info.start_time:
        out["wall_time_s"] = (run.info.end_time - run.info.start_time) / 1000.0
    # The latest evaluation of each kind wins; evals are in start order.
    # An evaluation of the untrained encoder (eval.random_init) is the baseline, kept apart.
    for ev in evals:
        em = ev.data.metrics
        kind = ev.data.tags.get("ssl.eval")
        init = "_init" if ev.data.params.get("eval.random_init") == "True" else ""
        if kind == "linear":
            for k in ("top1", "top5"):
                if f"linear/{k}" in em and not (init and k == "top5"):
                    out[f"linear_{k}{init}"] = em[f"linear/{k}"]
        elif kind == "finetune" and "finetune/top1" in em:
            column = _finetune_column(ev.data.params.get("eval.label_fraction", ""))
            out[column.replace("@", f"{init}@")] = em["finetune/top1"]
        elif kind == "knn" and "knn/top1" in em and "knn_top1" not in m and not init:
            out["knn_top1"] = em["knn/top1"]
    return out


def collect(
    client: Any, *, experiment: str | None = None, run_ids: Sequence[str] = (), uri: str = ""
) -> list[Row]:
    """The rows for the pretraining runs of ``experiment`` or the runs ``run_ids``.

    :raises UserError: for an unknown experiment or run, or when there is nothing to compare.
    """
    from ssl_core.experiments.store import get_run

    if run_ids:
        chosen = [get_run(client, run_id, uri) for run_id in run_ids]
        for run in chosen:
            if _is_eval(run):
                raise UserError(
                    f"run {run.info.run_id} is an evaluation (ssl eval); name pretraining runs"
                )
        experiment_ids = sorted({run.info.experiment_id for run in chosen})
    else:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            names = sorted(e.name for e in client.search_experiments())
            raise UserError(
                f"no experiment '{experiment}' in the MLflow store {uri}; "
                f"experiments: {', '.join(names) or 'none'}"
            )
        experiment_ids = [found.experiment_id]
        chosen = []
    everything = _search(client, experiment_ids)
    evals: dict[str, list[Any]] = {}
    for run in everything:
        if _is_eval(run):
            tags = run.data.tags
            source = tags.get("ssl.source_run_id") or tags.get("mlflow.parentRunId")
            if source:
                evals.setdefault(source, []).append(run)
    if not run_ids:
        chosen = [  # a continued run is a child of the run it continues, and a run itself
            r
            for r in everything
            if not _is_eval(r)
            and ("mlflow.parentRunId" not in r.data.tags or "ssl.continued_from" in r.data.tags)
        ]
        foreign = [r for r in chosen if not _is_ours(r)]
        chosen = [r for r in chosen if _is_ours(r)]
        if foreign:
            import sys

            names = ", ".join(r.info.run_name or r.info.run_id[:8] for r in foreign[:5])
            more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            print(
                f"note: left out {len(foreign)} run(s) not made by ssl run: {names}{more} "
                "(name them with runs=ID,... to include them)",
                file=sys.stderr,
            )
        if not chosen:
            raise UserError(f"experiment '{experiment}' has no pretraining runs to compare")
    rows = []
    for run in chosen:
        rows.append(
            Row(
                run_id=run.info.run_id,
                name=run.info.run_name or run.info.run_id[:8],
                status=run.info.status,
                params=dict(run.data.params),
                metrics=_summary(run, evals.get(run.info.run_id, [])),
                raw=dict(run.data.metrics),
            )
        )
    return rows


def differing_keys(rows: Sequence[Row]) -> list[str]:
    """Config keys whose values are not the same in every run (a key a run lacks counts)."""
    keys = sorted({k for row in rows for k in row.params})
    differ = []
    for key in keys:
        if key in IGNORED_PARAMS or key.startswith(IGNORED_PREFIXES):
            continue
        if len({row.params.get(key) for row in rows}) > 1:
            differ.append(key)
    return differ


def metric_columns(rows: Sequence[Row]) -> list[str]:
    """The metric columns some run has, in display order."""
    present = {k for row in rows for k in row.metrics}
    later = ("img_per_s", "wall_time_s")
    accuracy = [
        n for n in COLUMNS if n in present and n not in later and not n.startswith("health_")
    ]
    finetune = sorted(k for k in present if k.startswith("finetune_top1"))
    speed = [n for n in later if n in present]
    health = [n for n in COLUMNS if n in present and n.startswith("health_")]
    return accuracy + finetune + speed + health


def sort_rows(rows: list[Row], key: str | None) -> list[Row]:
    """Rows best first by metric or config key ``key`` (runs without it last)."""
    if not key:
        return rows
    columns = {k for row in rows for k in row.metrics}
    params = {k for row in rows for k in row.params}
    if key not in columns and key not in params:
        from ssl_core.errors import closest

        hint = closest(key, sorted(columns | params), n=1)
        where = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise UserError(
            f"cannot sort by '{key}'{where}; metrics: {', '.join(sorted(columns)) or 'none'}"
        )
    if key in columns:
        descending = not key.startswith(LOWER_IS_BETTER)
        have = [r for r in rows if key in r.metrics]
        have.sort(key=lambda r: r.metrics[key], reverse=descending)
        return have + [r for r in rows if key not in r.metrics]

    def param_key(row: Row) -> tuple[int, float | str]:
        value = row.params.get(key, "")
        try:
            return (0, float(value))
        except ValueError:
            return (1, value)

    return sorted(rows, key=param_key)


def short_key(key: str) -> str:
    """``backbone.name`` → ``backbone``; other keys stay whole."""
    return key[: -len(".name")] if key.endswith(".name") else key


def run_label(row: Row, keys: Sequence[str]) -> str:
    """A run's label: its differing keys, or its name when nothing differs."""
    if not keys:
        return row.name
    return ", ".join(f"{short_key(k)}={row.params.get(k, '-')}" for k in keys)


# --- the command ------------------------------------------------------------------------------


def parse(args: Sequence[str]) -> dict[str, str]:
    """The ``key=value`` arguments of ``ssl compare``.

    :raises UserError: for a malformed or unknown key.
    """
    from ssl_core.errors import did_you_mean

    options: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"expected key=value, got '{arg}' (e.g. experiment=NAME)")
        if key not in KEYS:
            raise UserError(
                f"unknown key '{key}'{did_you_mean(key, KEYS)} for ssl compare; "
                f"valid: {', '.join(KEYS)}"
            )
        options["experiment" if key == "tracking.experiment" else key] = value
    if "experiment" in options and "runs" in options:
        raise UserError("give experiment=NAME or runs=ID,ID,..., not both")
    return options


def compare(args: Sequence[str], *, fmt: str = "table", plot_path: str | None = None) -> int:
    """Run ``ssl compare``: print the comparison as ``fmt`` (table, csv, json), plot it."""
    import sys

    from ssl_core.experiments.store import DEFAULT_URI, open_store

    options = parse(args)
    if plot_path:
        from ssl_core.paths import check_writable_file

        check_writable_file(Path(plot_path), "--plot")  # before the store is read
    uri = options.get("tracking.uri", DEFAULT_URI)
    client = open_store(uri)
    run_ids = [r.strip() for r in options.get("runs", "").split(",") if r.strip()]
    experiment = options.get("experiment", "ssl_core")
    rows = collect(client, experiment=None if run_ids else experiment, run_ids=run_ids, uri=uri)
    rows = sort_rows(rows, options.get("sort"))
    keys = differing_keys(rows)
    title = (
        f"{len(rows)} runs" if run_ids else f"experiment '{experiment}': {len(rows)} runs"
    ) + f" ({uri})"
    if fmt == "json":
        from ssl_core.experiments.compare_output import to_json

        print(to_json(rows, keys, title))
    elif fmt == "csv":
        from ssl_core.experiments.compare_output import to_csv

        print(to_csv(rows, keys), end="")
    else:
        from ssl_core.experiments.compare_output import print_table

        print_table(rows, keys, title)
    if plot_path:
        from ssl_core.experiments.compare_plot import plot

        written = plot(client, rows, keys, Path(plot_path), title)
        print(f"plot: {written}", file=sys.stderr)
    return 0
