"""``ssl compare`` output: a table on a terminal, CSV or JSON for scripts.

Outside a terminal (a pipe, a file, a CI log) the table is markdown at full width: no run name
wraps and no key is cut, whatever the width of the terminal that is not there.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from ssl_core.experiments.compare import COLUMNS, Row, format_value, metric_columns, short_key


def _records(rows: Sequence[Row], keys: Sequence[str], columns: Sequence[str]) -> list[dict]:
    return [
        {
            "run_id": row.run_id,
            "run_name": row.name,
            "status": row.status,
            "params": {k: row.params.get(k) for k in keys},
            "metrics": {c: row.metrics.get(c) for c in columns},
        }
        for row in rows
    ]


def to_json(rows: Sequence[Row], keys: Sequence[str], title: str) -> str:
    columns = metric_columns(rows)
    payload = {"title": title, "differing_keys": list(keys), "runs": _records(rows, keys, columns)}
    return json.dumps(payload, indent=2)


def to_csv(rows: Sequence[Row], keys: Sequence[str]) -> str:
    columns = metric_columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["run_id", "run_name", "status", *keys, *columns])
    for row in rows:
        values = [row.metrics.get(c) for c in columns]
        writer.writerow(
            [row.run_id, row.name, row.status, *(row.params.get(k, "") for k in keys)]
            + ["" if v is None else v for v in values]
        )
    return buffer.getvalue()


def _header(column: str) -> str:
    if column in COLUMNS:
        return COLUMNS[column][0]
    return column.replace("_top1_init@", " top-1 at init @").replace("_top1@", " top-1 @")


def to_markdown(rows: Sequence[Row], keys: Sequence[str], title: str) -> str:
    """The table as markdown, every cell whole (for pipes, files and CI logs)."""
    columns = metric_columns(rows)
    show_status = any(row.status != "FINISHED" for row in rows)
    header = ["run", "id", *(["status"] if show_status else []), *keys]
    header += [_header(c) for c in columns]

    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [f"{title}", "", "| " + " | ".join(header) + " |"]
    lines.append(
        "|"
        + "|".join("---" if i < 2 + show_status + len(keys) else "---:" for i in range(len(header)))
        + "|"
    )
    for row in rows:
        cells = [row.name, row.run_id[:8], *([row.status] if show_status else [])]
        cells += [row.params.get(k, "-") for k in keys]
        cells += [format_value(c, row.metrics.get(c)) for c in columns]
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    if not keys and len(rows) > 1:
        lines += ["", "the runs' configs do not differ"]
    return "\n".join(lines) + "\n"


def print_table(rows: Sequence[Row], keys: Sequence[str], title: str) -> None:
    import sys

    if not sys.stdout.isatty():
        sys.stdout.write(to_markdown(rows, keys, title))
        return
    from rich.console import Console
    from rich.table import Table

    columns = metric_columns(rows)
    table = Table(title=title, title_justify="left")
    table.add_column("run", overflow="fold")
    table.add_column("id", style="dim")
    show_status = any(row.status != "FINISHED" for row in rows)
    if show_status:
        table.add_column("status")
    for key in keys:
        table.add_column(short_key(key), style="cyan")
    for column in columns:
        table.add_column(_header(column), justify="right")
    best = {}
    for column in columns:
        values = [row.metrics[column] for row in rows if column in row.metrics]
        # health figures describe a run; bigger is not better
        if len(values) > 1 and column != "wall_time_s" and not column.startswith("health_"):
            best[column] = min(values) if column.startswith("loss") else max(values)
    for row in rows:
        cells = [row.name, row.run_id[:8]]
        if show_status:
            cells.append(row.status)
        cells.extend(str(row.params.get(k, "-")) for k in keys)
        for column in columns:
            text = format_value(column, row.metrics.get(column))
            if column in best and row.metrics.get(column) == best[column]:
                text = f"[bold green]{text}[/bold green]"
            cells.append(text)
        table.add_row(*cells)
    console = Console()
    console.print(table)
    if not keys and len(rows) > 1:
        console.print("the runs' configs do not differ", style="dim")
