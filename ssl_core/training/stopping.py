"""Stopping a run cleanly: the first SIGINT/SIGTERM finishes the step, a second Ctrl-C exits;
a lifecycle plugin that asked the run to fail (:meth:`RunContext.fail`) ends it at a step
boundary, on every process at once."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ssl_core.errors import RunFailed


class StopRequest:
    """Set by the first SIGINT/SIGTERM; the loop stops cleanly after the current step."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after this step and writing a checkpoint "
            "(Ctrl-C again to stop at once)",
            file=sys.stderr,
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
