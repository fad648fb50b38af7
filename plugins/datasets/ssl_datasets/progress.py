"""Progress of a long scan on stderr: a live line on a terminal, a plain line now and then otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

#: A scan shorter than this shows nothing.
SHOW_AFTER_S = 2.0
#: Off a terminal (logs, SLURM output files), one line this often.
PLAIN_EVERY_S = 10.0
#: On a terminal, the live line is updated at most this often.
LIVE_EVERY_S = 0.1


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


class ScanProgress:
    """What a scan has found so far, shown once it has taken :data:`SHOW_AFTER_S` seconds.

    ``update`` is cheap enough to call for every folder: it reads the clock and returns until
    there is something to show. On a terminal (stderr a tty) a rich progress line counts the
    files and folders, with a bar over the first-level folders when their number is known; off
    a terminal a plain line every :data:`PLAIN_EVERY_S` seconds. ``done`` prints one closing
    line, only when something was shown.
    """

    def __init__(self, what: str, noun: str = "image file") -> None:
        self.what, self.noun = what, noun
        self.start = time.monotonic()
        self.next_at = self.start + SHOW_AFTER_S
        self.shown = False
        self.live: Any = None
        self.task: Any = None

    def update(
        self, files: int, folders: int, done: int | None = None, total: int | None = None
    ) -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        self.shown = True
        if self.live is None and sys.stderr.isatty():
            self._start_live()
        if self.live is not None:
            self.next_at = now + LIVE_EVERY_S
            status = f"{_count(files, self.noun)} in {_count(folders, 'folder')}"
            self.live.update(self.task, completed=done or 0, total=total, status=status)
            return
        self.next_at = now + PLAIN_EVERY_S
        where = f", {done}/{total} top-level folders" if total else ""
        print(
            f"{self.what}: {_count(files, self.noun)} in {_count(folders, 'folder')} so far"
            f"{where} ({now - self.start:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.live = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=Console(file=sys.stderr),
            transient=True,
        )
        self.live.start()
        self.task = self.live.add_task(self.what, total=None, status="")

    def done(self, files: int, folders: int, note: str = "") -> None:
        """Close the live line; when anything was shown, one line with the totals."""
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.shown:
            took = time.monotonic() - self.start
            print(
                f"{self.what}: {_count(files, self.noun)} in {_count(folders, 'folder')}, "
                f"{took:.1f} s{note}",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> ScanProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:  # an error mid-scan: leave the terminal clean
            self.live.stop()
            self.live = None
