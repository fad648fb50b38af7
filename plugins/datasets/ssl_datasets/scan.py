"""Listing the image files under a folder: names only, no file is opened.

The scan reads folders, never files: a folder's entries come with their type, so telling a
regular file from a folder, a symlink or a special file costs no system call, and on a cold
disk the scan reads one block per folder rather than one per file (an inode, or a header,
for each file: docs/performance.md has the figures). A corrupt file is found when it is
loaded (see :class:`ssl_datasets.folder.FolderImages`).
"""

from __future__ import annotations

import os
import stat

import numpy as np

from ssl_core import UserError

from .images import reason
from .index import Index, Skips
from .paths import PathTable
from .progress import ScanProgress

#: File extensions the ``folder`` dataset reads (compared case-insensitively).
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".webp")
_EXTENSIONS = frozenset(IMAGE_EXTENSIONS)

#: Kinds of skipped entries: (one, many, whether data.strict=true stops on them).
SKIP_KINDS = {
    "unreadable_dir": ("unreadable folder", "unreadable folders", True),
    "outside_link": (
        "symlink leading outside the folder",
        "symlinks leading outside the folder",
        False,
    ),
    "broken_link": ("broken symlink", "broken symlinks", False),
    "special": ("special file (pipe, socket or device)", "special files", False),
}


def is_image_name(name: str) -> bool:
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in _EXTENSIONS


def describe_special(mode: int) -> str:
    """What a file that is not a regular file is, from its ``st_mode``: "a pipe", ..."""
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def scan_folder(root: str, progress: ScanProgress | None = None) -> Index:
    """The image files under ``root``, depth first, each folder's files (sorted) first.

    - Hidden files and folders (names starting with ``.``) are skipped: they are metadata
      such as macOS ``._name.jpg`` files, not images.
    - Only regular files are taken: a pipe, socket or device named like an image is skipped
      and never opened (opening a pipe would block).
    - A symlink is followed when its target lies inside ``root`` (resolved), and skipped
      otherwise; a folder reached twice (a loop, a folder linked twice) is listed once.
    - A subfolder that cannot be listed is skipped; the index then is not cached, since
      making it readable would not change any folder's modification time.

    Files in a first-level subfolder get that subfolder as their group (the class).

    :raises UserError: when ``root`` itself cannot be listed.
    """
    real_root = os.path.realpath(root)
    inside = real_root.rstrip(os.sep) + os.sep
    relative: list[str] = []
    groups: list[int] = []
    tops: list[str] = []  # first-level subfolders listed, in order: the groups
    dirs: list[str] = []
    mtimes: list[int] = []
    skipped = {kind: Skips() for kind in SKIP_KINDS}
    seen: set[str] = set()
    n_tops = 0
    # (path relative to root with a trailing separator or "", real path, group); a group of
    # None marks a first-level subfolder, which gets its number when it is listed
    stack: list[tuple[str, str, int | None]] = [("", real_root, -1)]
    while stack:
        rel, real, group = stack.pop()
        if real in seen:  # a symlink loop, or a folder linked twice
            continue
        seen.add(real)
        where = os.path.join(root, rel)
        try:
            # the time first: a change made while the folder is listed moves it past this
            mtime = os.stat(where).st_mtime_ns
            with os.scandir(where) as listing:
                entries = list(listing)
        except OSError as error:
            why = error.strerror or reason(error)
            if not rel:
                raise UserError(
                    f"cannot read the folder {root}: {why}; check its permissions"
                ) from error
            skipped["unreadable_dir"].add(rel, why)
            continue
        if group is None:
            group = len(tops)
            tops.append(rel[:-1])
        dirs.append(rel)
        mtimes.append(mtime)
        files: list[str] = []
        subdirs: list[tuple[str, str]] = []  # (name, real path)
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append((name, os.path.join(real, name)))
                elif entry.is_file(follow_symlinks=False):
                    if is_image_name(name):
                        files.append(name)
                elif entry.is_symlink():
                    _follow(entry, rel, real_root, inside, files, subdirs, skipped)
                elif is_image_name(name):
                    skipped["special"].add(rel + name, describe_special(entry.stat().st_mode))
            except OSError as error:  # the entry went away while the folder was read
                if is_image_name(name):
                    skipped["broken_link"].add(rel + name, error.strerror or reason(error))
        files.sort()
        relative.extend([rel + name for name in files])
        groups.extend([group] * len(files))
        subdirs.sort()
        if not rel:
            n_tops = len(subdirs)
        for name, target in reversed(subdirs):
            stack.append((rel + name + os.sep, target, None if not rel else group))
        if progress is not None:
            progress.update(len(relative), len(dirs), max(len(tops) - 1, 0), n_tops)
    unreadable = skipped["unreadable_dir"].count
    return Index(
        paths=PathTable.from_relative(root, relative),
        group=np.asarray(groups, dtype=np.int32),
        group_names=tops,
        dirs=dirs,
        dir_mtimes=mtimes,
        skipped={kind: s for kind, s in skipped.items() if s.count},
        not_cached="a subfolder could not be read" if unreadable else None,
    )


def _follow(
    entry: os.DirEntry,
    rel: str,
    real_root: str,
    inside: str,
    files: list[str],
    subdirs: list[tuple[str, str]],
    skipped: dict[str, Skips],
) -> None:
    """Sort a symlink in a folder being scanned: into ``files``, ``subdirs`` or ``skipped``."""
    name = entry.name
    target = os.path.realpath(entry.path)
    try:
        mode = os.stat(target).st_mode
    except OSError as error:  # dangling, or a loop of links
        skipped["broken_link"].add(rel + name, error.strerror or reason(error))
        return
    within = target == real_root or target.startswith(inside)
    if stat.S_ISDIR(mode):
        if within:
            subdirs.append((name, target))
        else:
            skipped["outside_link"].add(rel + name + os.sep, f"leads to {target}")
    elif not is_image_name(name):
        return
    elif not within:
        skipped["outside_link"].add(rel + name, f"leads to {target}")
    elif stat.S_ISREG(mode):
        files.append(name)
    else:
        skipped["special"].add(rel + name, describe_special(mode))
