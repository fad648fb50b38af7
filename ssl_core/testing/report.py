"""``ssl plugins check [NAME...]``: the contract's checks as a table, exit 1 when one fails."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from ssl_core.testing import Result, run_checks


def check_command(names: Sequence[str], as_json: bool = False) -> int:
    """Run the checks of the components ``names`` select and print them; the exit code."""
    from ssl_core.plugins import get_plugins, warn_failures

    plugins = get_plugins()
    warn_failures(plugins)
    # a plugin that does not even load fails its first check: loading
    broken = [f for f in plugins.failures if not names or f.name in names]
    results = [Result(f"plugin:{f.name}", f.name, "loads", False, f.error) for f in broken]
    rest = [name for name in names if name not in {f.name for f in broken}]
    if rest or not names:
        results += run_checks(rest, plugins)
    if as_json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        print_table(results)
    return 0 if all(r.passed for r in results) else 1


def print_table(results: Sequence[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ssl_core plugin contract", title_justify="left")
    for column in ("component", "plugin", "check", "result", "reason"):
        table.add_column(column, overflow="fold")
    previous = None
    for result in results:
        first = result.component != previous
        if first and previous is not None:
            table.add_section()
        previous = result.component
        verdict = "[green]PASS[/green]" if result.passed else "[bold red]FAIL[/bold red]"
        table.add_row(
            result.component if first else "",
            result.plugin if first else "",
            result.check,
            verdict,
            result.reason,
        )
    # Piped or captured output is not wrapped at 80 columns: the reasons are the point.
    wide = sys.stdout.isatty() or "COLUMNS" in os.environ
    console = Console() if wide else Console(width=160)
    console.print(table)
    failed = sum(not r.passed for r in results)
    components = len({r.component for r in results})
    summary = f"{len(results)} checks of {components} components: {len(results) - failed} passed"
    console.print(summary + (f", [bold red]{failed} failed[/bold red]" if failed else ""))
