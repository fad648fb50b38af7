"""Stopping a run cleanly on SIGINT/SIGTERM, whatever it is doing, and when a plugin asks.

What a signal does depends on the phase of the run:

- **setting up** (the config checked, data listed, model built, the first kNN): the run stops
  at once, before any step and before anything is written or tracked;
- **training**: the first signal finishes the step under way, writes a checkpoint and stops;
  a second Ctrl-C stops at once;
- **ending** (trackers recording the run's end, uploading its files): signals wait until the
  end is recorded, so that no run is left RUNNING half-uploaded.

A lifecycle plugin that asked the run to fail (:meth:`RunContext.fail`) ends it at a step
boundary, on every process at once (:func:`fail_if_asked`).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ssl_core.console import first_process
from ssl_core.errors import RunFailed, RunInterrupted


def _say(text: str) -> None:
    if first_process():  # one process speaks for a run of several
        print(text, file=sys.stderr)


class StopRequest:
    """What the signals asked for; ``signum`` is set by the first SIGINT/SIGTERM."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.phase = "setup"

    def training(self) -> None:
        """From now on a signal stops the run after the step under way."""
        self.phase = "training"

    @contextmanager
    def ending(self) -> Iterator[None]:
        """Signals wait while the body (recording the run's end) runs."""
        before, self.phase = self.phase, "ending"
        try:
            yield
        finally:
            self.phase = before

    def handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.phase == "setup":
            self.signum = signum
            raise RunInterrupted(
                signum,
                f"stopped by {name} before training started; nothing was written "
                "(start again with the same command)",
            )
        if self.phase == "ending":
            self.signum = self.signum or signum
            _say(f"\n{name}: recording the run's end first; it stops as soon as that is done")
            return
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        self.signum = signum
        _say(
            f"\n{name}: stopping after this step and writing a checkpoint "
            "(Ctrl-C again to stop at once)"
        )


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a :class:`StopRequest` while training (main thread only)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, request.handle)
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def fail_if_asked(run: Any, failed: bool) -> None:
    """Raise :class:`RunFailed` when ``failed``: some process's ``run.fail`` was called.

    ``failed`` comes from the flags the engine reduces over processes each step, so every
    process raises at the same step; lifecycle plugins run on the first process only, so the
    others get a general message (the first process's is the one shown).
    """
    if failed:
        raise RunFailed(run.failure or "a lifecycle plugin on the first process failed the run")
