"""``ssl compare --plot``: loss, kNN and health curves of the compared runs on shared axes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssl_core.experiments.compare import Row, projection_of, run_label, short_key
from ssl_core.monitors.collapse import STD_LOW


def _history(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    points = {m.step: m.value for m in client.get_metric_history(run_id, key)}
    return sorted(points.items())


def _smooth(values: list[float]) -> list[float]:
    """Bias-corrected exponential moving average over about 1/25 of the curve."""
    window = max(1, len(values) // 25)
    if window == 1:
        return list(values)
    beta = 1.0 - 1.0 / window
    out, avg = [], 0.0
    for i, value in enumerate(values, start=1):
        avg = beta * avg + (1.0 - beta) * value
        out.append(avg / (1.0 - beta**i))
    return out


def _curves(client: Any, row: Row) -> dict[str, Any]:
    loss = _history(client, row.run_id, "loss")
    knn = dict(_history(client, row.run_id, "knn/top1"))
    last_step = max([s for s, _ in loss] or [0])
    if "knn_top1_init" in row.raw:
        knn.setdefault(0, row.raw["knn_top1_init"])
    if "knn_top1" in row.raw:
        knn[last_step] = row.raw["knn_top1"]
    epochs = _history(client, row.run_id, "epoch")
    steps_per_epoch = epochs[0][0] / epochs[0][1] if epochs and epochs[0][1] else None
    projection = projection_of(row.raw)
    health = {"encoder": _history(client, row.run_id, "health/feature_std_ratio")}
    if projection:
        health[projection] = _history(client, row.run_id, f"health/{projection}/feature_std_ratio")
    return {
        "loss": loss,
        "knn": sorted(knn.items()),
        "health": health,
        "steps_per_epoch": steps_per_epoch,
    }


LINE_STYLES = ("-", "--", ":", "-.")


def _styles(rows: Sequence[Row], keys: Sequence[str]) -> tuple[list[int], list[str]]:
    """A colour index and a line style per run.

    With two or more differing keys and at most four values of the last one, the last key
    sets the line style and the others the colour, so a grid sweep reads as a grid.
    """
    last = keys[-1] if len(keys) >= 2 else None
    last_values = sorted({row.params.get(last, "") for row in rows}) if last else []
    if last is None or len(last_values) > len(LINE_STYLES):
        return list(range(len(rows))), ["-"] * len(rows)
    groups: dict[str, int] = {}
    colours, styles = [], []
    for row in rows:
        group = run_label(row, keys[:-1])
        colours.append(groups.setdefault(group, len(groups)))
        styles.append(LINE_STYLES[last_values.index(row.params.get(last, ""))])
    return colours, styles


def plot(client: Any, rows: Sequence[Row], keys: Sequence[str], path: Path, title: str) -> Path:
    """Loss, kNN top-1 and health curves of ``rows`` on shared axes, one colour per run, as a
    PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [_curves(client, row) for row in rows]
    by_epoch = all(c["steps_per_epoch"] for c in curves)
    unit = "epoch" if by_epoch else "optimizer step"
    colour_of, style_of = _styles(rows, keys)
    colours = plt.get_cmap("tab10" if len(set(colour_of)) <= 10 else "tab20")
    fig, (ax_loss, ax_knn, ax_health) = plt.subplots(1, 3, figsize=(17, 4.8), layout="constrained")
    handles, smoothed = [], False
    for i, (row, curve) in enumerate(zip(rows, curves, strict=True)):
        colour = colours(colour_of[i] % colours.N)
        style = {"color": colour, "linestyle": style_of[i], "linewidth": 2.0}
        scale = curve["steps_per_epoch"] if by_epoch else 1.0
        label = run_label(row, keys)
        if curve["loss"]:
            x = [s / scale for s, _ in curve["loss"]]
            y = [v for _, v in curve["loss"]]
            smooth = _smooth(y)
            if smooth != y:
                smoothed = True
                ax_loss.plot(x, y, color=colour, alpha=0.2, linewidth=0.8)
            (line,) = ax_loss.plot(x, smooth, label=label, **style)
        else:
            (line,) = ax_loss.plot([], [], label=label, **style)
        handles.append(line)
        if curve["knn"]:
            x = [s / scale for s, _ in curve["knn"]]
            y = [v for _, v in curve["knn"]]
            ax_knn.plot(x, y, marker="o", markersize=4, **style)
            ax_knn.annotate(
                f"{y[-1]:.3f}",
                (x[-1], y[-1]),
                textcoords="offset points",
                xytext=(5, 0),
                fontsize=8,
                color=colour,
                va="center",
            )
        for name, points in curve["health"].items():
            if not points:
                continue
            # the projection is where collapse shows first: drawn bold, the encoder faint
            encoder = name == "encoder"
            ax_health.plot(
                [s / scale for s, _ in points],
                [v for _, v in points],
                color=colour,
                linestyle=style_of[i],
                linewidth=1.0 if encoder else 2.0,
                alpha=0.45 if encoder else 1.0,
            )
    ax_loss.set_title("training loss" + (" (smoothed; raw faint)" if smoothed else ""))
    ax_loss.set_xlabel(unit)
    ax_loss.set_ylabel("loss")
    ax_knn.set_title("kNN top-1 on the held-out split")
    ax_knn.set_xlabel(unit)
    ax_knn.set_ylabel("top-1")
    if not any(c["knn"] for c in curves):
        ax_knn.text(
            0.5,
            0.5,
            "no kNN top-1 logged\n(labelled data, eval.knn / eval.knn_every)",
            ha="center",
            va="center",
            transform=ax_knn.transAxes,
            color="grey",
        )
    projections = sorted({n for c in curves for n, p in c["health"].items() if p} - {"encoder"})
    shown = f"{', '.join(projections)} bold, encoder faint" if projections else "encoder"
    ax_health.set_title(f"representation health: std·√d ({shown})")
    ax_health.set_xlabel(unit)
    ax_health.set_ylabel("std·√d (1 = isotropic, 0 = collapsed)")
    if any(p for c in curves for p in c["health"].values()):
        ax_health.axhline(STD_LOW, color="grey", linestyle=":", linewidth=1.0)
        ax_health.annotate(
            "collapse warning",
            (0.0, STD_LOW),
            xycoords=("axes fraction", "data"),
            textcoords="offset points",
            xytext=(4, 3),
            fontsize=8,
            color="grey",
        )
        ax_health.set_ylim(bottom=0)
    else:
        ax_health.text(
            0.5,
            0.5,
            "no health/* logged\n(eval.health_every)",
            ha="center",
            va="center",
            transform=ax_health.transAxes,
            color="grey",
        )
    for ax in (ax_loss, ax_knn, ax_health):
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(title, fontsize=12)
    legend_title = ", ".join(short_key(k) for k in keys) if keys else "run"
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), 3),
        frameon=False,
        title=legend_title,
        fontsize=9,
    )
    from ssl_core.errors import UserError
    from ssl_core.files import write_atomic

    path = Path(path)
    try:  # whole or not at all, with the permissions the umask gives
        write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=130, format="png"))
    except OSError as exc:
        raise UserError(f"cannot write the plot to {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path
