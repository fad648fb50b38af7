"""``data.file_list``: the image files a CSV names, one per line, each with an optional label.

The format: ``path`` or ``path,label`` on each line (CSV, so a path holding a comma is
quoted), blank lines ignored, and a first line ``path`` or ``path,label`` taken as a header.
Fields are stripped of surrounding spaces. Paths are relative to a base folder (``data.path``
when given, else the list's folder) or absolute. Labels are class names or integers; either
every line has one or none does.
"""

from __future__ import annotations

import csv
import os
import re
import stat

import numpy as np

from ssl_core import UserError

from .images import reason
from .index import Index, Skips
from .paths import PathTable
from .progress import ScanProgress
from .scan import describe_special

_HEADER_PATHS = frozenset({"path", "file", "filename", "image"})
_HEADER_LABELS = frozenset({"label", "class", "target"})
_INTEGER = re.compile(r"[+-]?\d+")
#: Lines parsed between two progress updates.
_PROGRESS_EVERY = 1 << 16


def _parse(
    list_path: str, shown: str, progress: ScanProgress | None
) -> tuple[list[str], list[str] | None, list[int]]:
    """``(paths, labels, line numbers)`` of the list's lines; labels ``None`` when unlabelled.

    :raises UserError: naming the line of the first malformed one.
    """
    paths: list[str] = []
    labels: list[str] = []
    lines: list[int] = []
    first: tuple[int, bool] | None = None  # the first path's line, and whether it has a label

    def malformed(line: int, problem: str) -> UserError:
        return UserError(
            f"data.file_list={shown} line {line}: {problem}; expected `path` or `path,label`"
        )

    try:
        with open(list_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            header_allowed = True
            try:
                for row in reader:
                    line = reader.line_num
                    fields = [f.strip() for f in row]
                    if not any(fields):
                        continue
                    if header_allowed and _is_header(fields):
                        header_allowed = False
                        continue
                    header_allowed = False
                    if len(fields) > 2:
                        raise malformed(line, f"{len(fields)} fields")
                    if not fields[0]:
                        raise malformed(line, "no path")
                    labelled = len(fields) == 2
                    if labelled and not fields[1]:
                        raise malformed(line, "an empty label")
                    if first is None:
                        first = (line, labelled)
                    elif labelled != first[1]:
                        has = "has one" if first[1] else "has none"
                        raise UserError(
                            f"data.file_list={shown} line {line}: "
                            f"{'a label' if labelled else 'no label'}, but line {first[0]} {has}; "
                            "give every line a label or none"
                        )
                    paths.append(fields[0])
                    if labelled:
                        labels.append(fields[1])
                    lines.append(line)
                    if progress is not None and len(paths) % _PROGRESS_EVERY == 0:
                        progress.update(len(paths), 0)
            except csv.Error as error:
                raise malformed(reader.line_num, reason(error)) from error
    except UnicodeDecodeError as error:
        raise UserError(
            f"data.file_list={shown} is not UTF-8 text ({reason(error)}); save it as UTF-8"
        ) from error
    except OSError as error:
        raise UserError(
            f"cannot read data.file_list={shown}: {error.strerror or reason(error)}"
        ) from error
    return paths, (labels if first is not None and first[1] else None), lines


def _is_header(fields: list[str]) -> bool:
    if fields[0].lower() not in _HEADER_PATHS:
        return False
    return len(fields) == 1 or fields[1].lower() in _HEADER_LABELS


def _why_not_a_file(entry: os.DirEntry | None) -> str | None:
    """Why a folder entry is not a regular file to read (``None``: it is one)."""
    if entry is None:
        return "no such file"
    if entry.is_file(follow_symlinks=False):
        return None
    if entry.is_symlink():
        try:
            mode = os.stat(entry.path).st_mode
        except OSError as error:
            return f"broken symlink: {error.strerror or reason(error)}"
    else:
        mode = entry.stat(follow_symlinks=False).st_mode
    if stat.S_ISREG(mode):
        return None
    return "a folder" if stat.S_ISDIR(mode) else describe_special(mode)


def read_file_list(
    list_path: str, base: str, shown: str, progress: ScanProgress | None = None
) -> Index:
    """The files ``list_path`` names that exist as regular files, in the list's order.

    Existence is checked by listing each folder the list names files in, once: on a cold disk
    that reads the folders' blocks rather than one inode per file, and a pipe named in the
    list is never opened. Lines naming anything else are skipped (kind ``missing``: the line
    number, the path and why). The index is keyed by the list's size and modification time and
    by the modification times of those folders.

    :param shown: the list as the user named it, for messages.
    :raises UserError: on a malformed line, or a list that cannot be read.
    """
    paths, labels, lines = _parse(list_path, shown, progress)
    by_dir: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        by_dir.setdefault(os.path.dirname(path), []).append(i)
    kept = np.zeros(len(paths), dtype=bool)
    missing = Skips()
    why: dict[int, str] = {}
    dirs: list[str] = []
    mtimes: list[int] = []
    not_cached = None
    n_kept = 0
    for done, (folder, members) in enumerate(by_dir.items()):
        where = os.path.join(base, folder)
        mtime = -1
        try:
            mtime = os.stat(where).st_mtime_ns
            with os.scandir(where) as listing:
                wanted = {os.path.basename(paths[i]) for i in members}
                entries = {e.name: e for e in listing if e.name in wanted}
        except OSError as error:
            entries = None
            if isinstance(error, FileNotFoundError):
                folder_why = "no such folder"
            else:
                folder_why = f"{where}: {error.strerror or reason(error)}"
                if not isinstance(error, NotADirectoryError):
                    not_cached = f"{where} could not be read"
        dirs.append(folder)
        mtimes.append(mtime)
        for i in members:
            name = os.path.basename(paths[i])
            if entries is None:
                why[i] = folder_why
            elif not name:
                why[i] = "a folder"
            else:
                problem = _why_not_a_file(entries.get(name))
                if problem is None:
                    kept[i] = True
                    n_kept += 1
                else:
                    why[i] = problem
        if progress is not None:
            progress.update(n_kept, done + 1, done + 1, len(by_dir))
    for i in sorted(why):
        missing.add(f"line {lines[i]}: {paths[i]}", why[i])
    keep = np.flatnonzero(kept).tolist()
    if labels is None:
        group = np.full(len(keep), -1, dtype=np.int32)
        names: list[str] = []
        numeric = False
    else:
        numeric = all(_INTEGER.fullmatch(label) for label in labels)
        if numeric:
            labels = [str(int(label)) for label in labels]
        number: dict[str, int] = {}
        group = np.fromiter(
            (number.setdefault(labels[i], len(number)) for i in keep),
            dtype=np.int32,
            count=len(keep),
        )
        names = list(number)
    try:
        info = os.stat(list_path)
    except OSError:
        info = None
    return Index(
        paths=PathTable.from_relative(base, [paths[i] for i in keep]),
        group=group,
        group_names=names,
        dirs=dirs,
        dir_mtimes=mtimes,
        files=[(os.path.abspath(list_path), info.st_size, info.st_mtime_ns)] if info else [],
        skipped={"missing": missing} if missing.count else {},
        numeric=numeric,
        not_cached=not_cached if info else "the list could not be read",
    )
