"""``trainer.devices=N``: the same ``ssl run`` command again as N processes on this machine.

The processes find each other through the environment torch.distributed reads, as torchrun
sets it (``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), and the
process that started them stays their parent until they end:

- a SIGINT or SIGTERM it receives goes to every process of the run (each in a session of its
  own, so a terminal's Ctrl-C reaches them once, through the parent): they finish the step,
  write a checkpoint and stop, and the parent exits with their status (130, 143);
- if the parent itself is killed (SIGKILL), the kernel sends them SIGTERM (Linux), so they
  stop the same way instead of training on unowned;
- when one process fails, the others get ``GRACE_S`` seconds to fail too (they notice at their
  next collective), then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from ssl_core.errors import RunFailed, RunInterrupted, UserError

#: Seconds the other processes get to end by themselves after one failed, and after SIGTERM.
GRACE_S = 30.0


def relaunches(devices: int) -> bool:
    """Whether ``trainer.devices=devices`` starts its processes from this one (no launcher did)."""
    return devices > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel for SIGTERM when the parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl: stop now
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def relaunch(devices: int) -> dict[str, float]:
    """Run this ``ssl run`` command again as ``devices`` processes, wait, pass on signals.

    :raises UserError: when the command line is not an ``ssl run`` one (called as a library),
        or the processes stopped on a mistake in the input (exit code 2).
    :raises RunInterrupted: when they stopped on a signal passed on from here.
    :raises RunFailed: when they failed.
    """
    argv = sys.argv[1:]
    if "run" not in argv:
        raise UserError(
            f"trainer.devices={devices} starts processes from the ssl command line only; "
            "from Python, launch with torchrun --nproc_per_node=N -m ssl_core run ..."
        )
    command = [sys.executable, "-m", "ssl_core", *argv]
    base = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "WORLD_SIZE": str(devices),
        "LOCAL_WORLD_SIZE": str(devices),
    }
    print(f"starting {devices} processes: {' '.join(command[1:])}", file=sys.stderr)
    workers: list[subprocess.Popen] = []
    received: list[int] = []

    def forward(signum: int, frame: object) -> None:
        received.append(signum)
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, forward) for s in handled}
    try:
        for rank in range(devices):
            env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}
            workers.append(
                subprocess.Popen(
                    command, env=env, start_new_session=True, preexec_fn=_die_with_parent()
                )
            )
        codes = _wait(workers)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    return _outcome(devices, codes, received)


def _wait(workers: list[subprocess.Popen]) -> list[int]:
    """Every worker's exit code; the others are stopped some time after one failed."""
    failed_at: float | None = None
    terminated = False
    while True:
        codes = [worker.poll() for worker in workers]
        if all(code is not None for code in codes):
            return [int(code) for code in codes]  # type: ignore[arg-type]
        if failed_at is None and any(code not in (None, 0) for code in codes):
            failed_at = time.monotonic()
        if failed_at is not None:
            waited = time.monotonic() - failed_at
            running = [w for w, code in zip(workers, codes, strict=True) if code is None]
            if waited > 2 * GRACE_S:
                for worker in running:
                    worker.kill()
            elif waited > GRACE_S and not terminated:
                terminated = True
                for worker in running:
                    worker.terminate()
        time.sleep(0.2)


def _outcome(devices: int, codes: list[int], received: list[int]) -> dict[str, float]:
    if all(code == 0 for code in codes):
        return {}
    if received and all(code in (0, 128 + received[0]) for code in codes):
        raise RunInterrupted(received[0], "")  # rank 0 said where it stopped
    code = codes[0] if codes[0] != 0 else next(c for c in codes if c != 0)
    if code < 0:
        rank = codes.index(code)
        raise RunFailed(
            f"training process {rank} of {devices} was killed by "
            f"{signal.Signals(-code).name}; the others were stopped"
        )
    shown = ", ".join(f"rank {rank}: {c}" for rank, c in enumerate(codes))
    if code == 2:
        raise UserError(f"the {devices} training processes stopped ({shown}); see above")
    if code > 128 and code - 128 in (signal.SIGINT, signal.SIGTERM):
        raise RunInterrupted(code - 128, "")
    raise RunFailed(f"the {devices} training processes failed ({shown}); see above")
