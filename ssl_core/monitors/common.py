"""What the monitors share: restoring the random generators around a measurement."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ssl_core.training.run import RunContext


@contextmanager
def preserved_rng(device: Any):
    """Run the body with torch's CPU (and ``device``'s CUDA) generator restored afterwards.

    An evaluation draws random numbers (a DataLoader takes a seed from the global generator);
    restoring the state keeps the views of the following steps what they would have been.
    """
    import torch

    devices = [device] if getattr(device, "type", None) == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def labelled(run: RunContext) -> bool:
    return run.data is not None and run.data.labelled


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
