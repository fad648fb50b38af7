"""One owner per run directory, and the run's identity in it before the first step.

A run holds an advisory lock on ``output_dir/.ssl_core.lock`` (``flock``) from before it reads
anything there until it exits, however it exits: the kernel drops the lock of a process that
dies, so a lock left by a killed run is stale and the next run takes it over. A second run
into the same directory is refused with one line naming the owner (pid, host, MLflow run id)
before it writes anything. The lock file names its owner; it is removed when the run ends.

``output_dir/run.json`` is the run's identity: its MLflow run id, store and experiment, its
status (``RUNNING`` until it ends, then ``FINISHED``, ``FAILED`` or ``KILLED``), written when
the run starts and before its first step. ``resume=auto`` in a directory that holds no
checkpoint yet (a run killed in its first ``trainer.checkpoint_every`` steps) continues the
MLflow run named there, so no run is left RUNNING and no step is logged twice.

A fresh run (no ``resume``) into a directory that already holds a run is refused: its
checkpoints would mix with the other run's (``resume=auto`` continues it). On filesystems
without ``flock`` the lock falls back to the owner's pid: a lock whose process is gone on this
host is taken over.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_core.console import first_process
from ssl_core.errors import UserError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ssl_core.training.run import RunContext

LOCK_FILE = ".ssl_core.lock"
IDENTITY_FILE = "run.json"
#: The temporary files of :func:`ssl_core.files.write_atomic` (``.NAME.XXXXXXXX.tmp``).
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}


def read_identity(output_dir: Path) -> dict[str, Any]:
    """The ``run.json`` of a run directory (``{}`` when there is none or it is unreadable)."""
    try:
        value = json.loads((Path(output_dir) / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_dir_of(path: Path) -> Path:
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


class RunDirectory:
    """The run directory of one run, owned by this process (rank 0) while the run lives."""

    def __init__(self, config: DictConfig) -> None:
        self.config = config
        self.path = Path(str(config.output_dir))
        self.main = first_process()
        self.fd: int | None = None
        self.created: list[Path] = []
        self.previous: dict[str, Any] = {}
        self.identity: dict[str, Any] = {}

    # --- the lock -----------------------------------------------------------------------------

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    def acquire(self) -> None:
        """Own the directory, or raise :class:`UserError` naming its owner."""
        try:
            self._make_dirs()
            self.fd = self._lock()
            self._write_owner()
            self._check_holds_no_other_run()
        except OSError as exc:
            self.release()
            raise UserError(
                f"cannot use output_dir={self.path}: {exc.strerror or exc}; give a writable folder"
            ) from None
        except BaseException:
            self.release()
            raise

    def _make_dirs(self) -> None:
        missing = []
        for folder in [self.path, *self.path.parents]:
            if folder.exists():
                break
            missing.append(folder)
        for folder in reversed(missing):
            folder.mkdir()
            self.created.append(folder)

    def _lock(self) -> int:
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = self._read_owner(fd)
                os.close(fd)
                raise UserError(self._in_use(owner)) from None
            except OSError as exc:
                if exc.errno not in _NO_FLOCK:
                    os.close(fd)
                    raise
                self._pid_lock(fd)
                return fd
            # The last owner removes the file when it ends: own the file that is there.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def _pid_lock(self, fd: int) -> None:
        """Without flock: the lock is taken unless its pid still runs (on this host)."""
        owner = self._read_owner(fd)
        if not owner or owner.get("pid") == os.getpid():
            return
        if owner.get("host") != socket.gethostname():
            os.close(fd)
            raise UserError(
                self._in_use(owner)
                + f" (this filesystem has no flock, so a lock of another host cannot be checked; "
                f"remove {self.lock_path} if that run is gone)"
            )
        if _pid_alive(owner.get("pid")):
            os.close(fd)
            raise UserError(self._in_use(owner))

    @staticmethod
    def _read_owner(fd: int) -> dict[str, Any]:
        try:
            value = json.loads(os.pread(fd, 65536, 0).decode() or "{}")
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def _write_owner(self, run_id: str | None = None) -> None:
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "mlflow_run_id": run_id,
        }
        data = json.dumps(owner).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def _in_use(self, owner: dict[str, Any]) -> str:
        run_id = owner.get("mlflow_run_id") or read_identity(self.path).get("mlflow_run_id")
        who = (
            f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, "
            f"MLflow run {run_id or 'not created yet'}"
        )
        since = f", since {owner['started']}" if owner.get("started") else ""
        return (
            f"output_dir={self.path} is in use by another run ({who}{since}); wait for it to "
            "end, or give another output_dir"
        )

    def release(self) -> None:
        """Drop the lock; remove what :meth:`acquire` created if the run wrote nothing."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.lock_path.unlink()
            os.close(self.fd)
            self.fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in reversed(self.created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
        self.created = []

    # --- what the directory holds -------------------------------------------------------------

    def _holds(self) -> str | None:
        """A description of the run this directory holds, or None."""
        from ssl_core.training.resume import step_checkpoints

        identity = read_identity(self.path)
        steps = step_checkpoints(self.path)
        if not (identity or steps or (self.path / "checkpoint.pt").exists()):
            return None
        parts = []
        if identity.get("mlflow_run_id"):
            parts.append(f"MLflow run {identity['mlflow_run_id']}")
        if identity.get("status"):
            parts.append(str(identity["status"]))
        if steps:
            parts.append(f"checkpoint {steps[-1].name}")
        return ", ".join(parts) or "a run's files"

    def _check_holds_no_other_run(self) -> None:
        self.previous = read_identity(self.path)
        wanted = self.config.resume.path
        if wanted == "auto":
            return
        held = self._holds()
        if held is None:
            return
        if wanted is None:
            raise UserError(
                f"output_dir={self.path} already holds a run ({held}); continue it with "
                "resume=auto, or give another output_dir"
            )

    def check_resume(self, state: dict[str, Any] | None, path: Path | None) -> None:
        """Refuse to continue a checkpoint of another run in a directory holding a run."""
        if state is None or path is None or not self.main:
            return
        if _run_dir_of(Path(path)).resolve() == self.path.resolve():
            return
        here = self.previous.get("mlflow_run_id")
        theirs = state.get("mlflow_run_id")
        if here and here != theirs:
            raise UserError(
                f"output_dir={self.path} holds another run (MLflow run {here}) than the "
                f"checkpoint {path} (MLflow run {theirs}); continuing it there would mix the "
                "two: give another output_dir"
            )

    # --- the run's life -----------------------------------------------------------------------

    def adopt(self, run: RunContext) -> None:
        """Before the run starts: continue the MLflow run of a run killed before its first
        checkpoint (``resume=auto``, nothing restored)."""
        restored = run.resumed_from is not None  # a continuation clears the id on purpose
        if run.tracking_run_id is None and not restored and self.config.resume.path == "auto":
            run.tracking_run_id = self.previous.get("mlflow_run_id")

    def begin(self, run: RunContext) -> None:
        """The run started (its MLflow run exists): its config and identity go to the
        directory, before the first step; temporary files of a killed run are removed."""
        if not self.main:
            return
        from ssl_core.config import to_yaml
        from ssl_core.errors import RunFailed
        from ssl_core.files import write_atomic

        try:
            self._remove_temporary_files()
            run.artifacts["config"] = write_atomic(
                self.path / "config.yaml", lambda tmp: tmp.write_text(to_yaml(self.config))
            )
        except OSError as exc:
            raise RunFailed(f"cannot write the run's files in {self.path}: {exc}") from None
        tracking = self.config.tracking
        self.identity = {
            "mlflow_run_id": run.tracking_run_id,
            "tracking_uri": str(tracking.uri) if tracking.enabled else None,
            "experiment": str(tracking.experiment) if tracking.enabled else None,
            "run_name": str(tracking.run_name),
            "status": "RUNNING",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "resumed_from": str(run.resumed_from) if run.resumed_from else None,
        }
        try:
            self._write_identity()
        except OSError as exc:
            raise RunFailed(f"cannot write the run's files in {self.path}: {exc}") from None
        if self.fd is not None:
            self._write_owner(run.tracking_run_id)

    def end(self, status: str) -> None:
        """The run ended with ``status``: said in ``run.json``."""
        if not self.main or not self.identity:
            return
        self.identity.update(status=status, ended=time.strftime("%Y-%m-%d %H:%M:%S"))
        try:
            self._write_identity()
        except OSError as exc:
            print(f"warning: cannot update {self.path / IDENTITY_FILE}: {exc}", file=sys.stderr)

    def _write_identity(self) -> None:
        from ssl_core.files import write_atomic

        text = json.dumps(self.identity, indent=2) + "\n"
        write_atomic(self.path / IDENTITY_FILE, lambda tmp: tmp.write_text(text))

    def _remove_temporary_files(self) -> None:
        from ssl_core.training.resume import CHECKPOINT_DIR

        removed = []
        for folder in (self.path, self.path / CHECKPOINT_DIR):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if _TEMPORARY.match(entry.name) and entry.is_file():
                    with contextlib.suppress(OSError):
                        entry.unlink()
                        removed.append(entry.relative_to(self.path).as_posix())
        if removed:
            print(
                f"note: removed {len(removed)} partial file(s) left by an interrupted write: "
                + ", ".join(removed),
                file=sys.stderr,
            )


class _NotOwned(RunDirectory):
    """A process other than rank 0: it owns nothing and writes nothing."""

    def acquire(self) -> None:
        self.previous = read_identity(self.path)


@contextlib.contextmanager
def owned(config: DictConfig) -> Iterator[RunDirectory]:
    """Own ``config.output_dir`` for the body (rank 0; every process stops alike if it is
    refused)."""
    from ssl_core.training import distributed

    directory = RunDirectory(config) if first_process() else _NotOwned(config)
    problem = None
    try:
        directory.acquire()
    except UserError as exc:
        problem = str(exc)
    problem = distributed.broadcast_object(problem)
    if problem is not None:
        directory.release()
        raise UserError(problem)
    try:
        yield directory
    finally:
        directory.release()
