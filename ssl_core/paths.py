"""Paths a command will write to, checked before any work: one line naming what is wrong.

Writing is tried for real (a temporary file made and removed at once in the folder, or in its
closest existing ancestor): permission bits do not tell for root, read-only mounts or
``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ssl_core.errors import UserError


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    for folder in [path, *path.parents]:
        if folder.exists() or folder.is_symlink():
            return folder
    return Path(path.anchor or ".")


def shown(path: Path, limit: int = 100) -> str:
    """``path`` as text, its middle cut when longer than ``limit`` characters."""
    text = str(path)
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]}"


def _too_long(path: Path, existing: Path) -> str | None:
    limit = _name_max(existing if existing.is_dir() else existing.parent)
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > limit:
            shown = part if len(part) <= 40 else part[:37] + "..."
            return (
                f"the name '{shown}' is {size} bytes, more than the {limit} the filesystem allows"
            )
    return None


def writable_problem(folder: Path) -> str | None:
    """Why no file can be written in ``folder`` (made if missing), or None."""
    folder = Path(folder).expanduser().absolute()
    existing = nearest_existing(folder)
    too_long = _too_long(folder, existing)
    if too_long:
        return too_long
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".ssl-core-write-test-", dir=existing)
    except OSError as exc:
        return f"{existing}: {exc.strerror or exc}"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


def check_writable_folder(path: Path, key: str, hint: str = "give a writable folder") -> None:
    """``path`` is, or can be made, a folder this process writes in; else :class:`UserError`."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{key}={shown(path)} is a file, not a folder; give a folder")
    problem = writable_problem(path)
    if problem:
        raise UserError(f"cannot write in {key}={shown(path)}: {problem}; {hint}")


def check_writable_file(path: Path, key: str) -> None:
    """A file can be written at ``path``; else :class:`UserError`."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{key}={shown(path)} is a folder; give a file name")
    problem = writable_problem(path.parent if str(path.parent) else Path("."))
    if problem:
        raise UserError(f"cannot write {key}={shown(path)}: {problem}; give a writable path")
