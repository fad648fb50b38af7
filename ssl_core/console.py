"""One copy of a run's setup notes and warnings, however many processes train it.

Under torchrun every process resolves the same config, loads the same plugins and builds the
same model, so each would print the same ``note: ...`` and ``warning: ...`` lines. Processes
other than rank 0 keep those lines to themselves until training starts (:func:`setup_done`);
from then on what they say is their own (an image of their share of the data that does not
decode) and is printed. Every other line, errors included, is always printed.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

#: The lines said once per run during the setup.
SETUP_PREFIXES = ("note: ", "warning: ")


class _SetupFilter:
    """``sys.stderr`` of a process other than rank 0 during the setup: drops setup lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        kept = "".join(f"{line}\n" for line in lines if not line.startswith(SETUP_PREFIXES))
        if kept:
            self.stream.write(kept)
        return len(text)

    def flush(self) -> None:
        # a line without its newline yet is held until it can be told apart, unless it
        # cannot become a setup line
        if self.pending and not any(
            p.startswith(self.pending) or self.pending.startswith(p) for p in SETUP_PREFIXES
        ):
            self.stream.write(self.pending)
            self.pending = ""
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, ...
        return getattr(self.stream, name)


def first_process() -> bool:
    """Whether this process speaks for the run: rank 0 by ``$RANK`` (set by torchrun and by
    ``trainer.devices``), known before any process group is up; a lone process is."""
    return os.environ.get("RANK", "0") == "0"


def quiet_setup() -> None:
    """In a process other than rank 0, hold back setup notes and warnings."""
    if not first_process() and not isinstance(sys.stderr, _SetupFilter):
        sys.stderr = _SetupFilter(sys.stderr)  # type: ignore[assignment]


def setup_done() -> None:
    """Training starts: every process's lines are printed from here on."""
    if isinstance(sys.stderr, _SetupFilter):
        held = sys.stderr
        held.flush()
        sys.stderr = held.stream
        if held.pending and not held.pending.startswith(SETUP_PREFIXES):
            sys.stderr.write(held.pending)
