"""A plugin that misbehaves on demand, for the fault harness (tests/test_faults.py).

Installed for a subprocess through a ``*.dist-info`` folder on ``PYTHONPATH`` (entry point
``fault = fault_plugin:Fault``), so ``ssl`` finds it exactly as a third-party plugin. What it
does is read from ``SSL_FAULT=HOOK:ACTION[:STEP]``:

- ``HOOK``: ``import`` (when the module is imported), ``ssl_build_dataset`` (while the data
  is built, before the first step), ``ssl_step_end``, ``ssl_run_end``;
- ``ACTION``: ``sleep`` (until the file ``SSL_FAULT_RELEASE`` exists, at most 300 s; signals
  do not end it unless their handler raises), ``raise``
  (``RuntimeError``), ``exit0`` (``sys.exit(0)``), ``exitmsg`` (``sys.exit("...")``),
  ``interrupt`` (``raise KeyboardInterrupt``);
- ``STEP``: only at that step (``ssl_step_end``).

Before acting it prints ``fault: ACTION in HOOK`` on stderr, which the harness waits for.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from ssl_core import hookimpl

HOOK, _, _REST = os.environ.get("SSL_FAULT", "").partition(":")
ACTION, _, STEP = _REST.partition(":")


def act(hook: str, step: int | None = None) -> None:
    if hook != HOOK or (STEP and step is not None and step != int(STEP)):
        return
    print(f"fault: {ACTION} in {hook}", file=sys.stderr, flush=True)
    if ACTION == "sleep":
        release = os.environ.get("SSL_FAULT_RELEASE", "")
        until = time.monotonic() + 300
        while time.monotonic() < until and not (release and os.path.exists(release)):
            time.sleep(0.1)
    elif ACTION == "raise":
        raise RuntimeError(f"injected fault in {hook}")
    elif ACTION == "exit0":
        sys.exit(0)
    elif ACTION == "exitmsg":
        sys.exit(f"injected exit in {hook}")
    elif ACTION == "interrupt":
        raise KeyboardInterrupt


act("import")


class Fault:
    @hookimpl(wrapper=True)
    def ssl_build_dataset(self) -> Any:
        act("ssl_build_dataset")
        return (yield)

    @hookimpl
    def ssl_step_end(self, run: Any, step: int, metrics: dict) -> None:
        act("ssl_step_end", step)

    @hookimpl(tryfirst=True)
    def ssl_run_end(self, run: Any, status: str, metrics: dict) -> None:
        act("ssl_run_end")
