"""``trainer.devices=N``: the same ``ssl run`` command again as N processes under torchrun."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from ssl_core.errors import RunFailed, UserError


def relaunch(devices: int, argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run this ``ssl run`` command again as ``devices`` processes under torchrun, and wait.

    The processes rendezvous on this machine (``--standalone``); each sees the same command
    line and ``trainer.devices=N`` matches the world size the launcher reports.

    :raises UserError: when the command line is not an ``ssl run`` one (called as a library).
    :raises RunFailed: when the processes fail.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "run" not in argv:
        raise UserError(
            f"trainer.devices={devices} starts processes from the ssl command line only; "
            "from Python, launch with torchrun --nproc_per_node=N -m ssl_core run ..."
        )
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={devices}",
        "-m",
        "ssl_core",
        *argv,
    ]
    print(f"starting {devices} processes: {' '.join(command[1:])}", file=sys.stderr)
    code = subprocess.call(command)
    if code != 0:
        raise RunFailed(f"the {devices} training processes failed (exit code {code})")
    return {}
