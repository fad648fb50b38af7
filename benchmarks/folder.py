"""``data=folder`` over a big tree: the first open (every folder listed, the index saved) and
a cached one (the index read back), each timed as the engine builds the dataset.

The tree is ``folders x files`` hard links to a few tiny PNGs (20 inodes for a million
entries, which cost directory blocks only), under the system temp dir; it is removed afterwards,
also when the benchmark fails or is stopped (Ctrl-C, SIGTERM). The same part times reading
the first bytes of files, the check the scan does not make: on a warm page cache, and on
files whose pages were dropped from it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import log, table

#: Targets on a 2-core CPU for a tree of a million entries (docs/performance.md).
FIRST_OPEN_TARGET_S = 60.0
CACHED_OPEN_TARGET_S = 3.0


@dataclass
class FolderResult:
    folders: int
    per_folder: int
    build_s: float
    first_s: float
    cached_s: list[float]
    index_mib: float
    images: int
    classes: int
    header_warm_us: float
    header_cold_us: float
    cold_files: int
    remove_s: float = 0.0

    @property
    def entries(self) -> int:
        return self.folders * self.per_folder + self.folders


@contextlib.contextmanager
def removed_afterwards(prefix: str, timing: dict[str, float]) -> Iterator[Path]:
    """A fresh folder under the system temp dir, removed on the way out, even on SIGTERM.

    ``timing["remove_s"]`` is set to the seconds the removal took.
    """

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally below

    where = Path(tempfile.mkdtemp(prefix=prefix))
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield where
    finally:
        started = time.perf_counter()
        shutil.rmtree(where, ignore_errors=True)
        timing["remove_s"] = time.perf_counter() - started
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


#: Hard links per source image: ext4 allows 65,000 links to one inode.
LINKS_PER_SOURCE = 50_000


def _make_tree(root: Path, folders: int, per_folder: int) -> None:
    """``folders`` class folders of ``per_folder`` hard links each, to a few tiny PNGs."""
    from PIL import Image

    sources: list[str] = []
    tree = root / "tree"
    tree.mkdir()
    made = 0
    for c in range(folders):
        where = tree / f"class{c:05d}"
        where.mkdir()
        base = str(where)
        for i in range(per_folder):
            if made % LINKS_PER_SOURCE == 0:
                source = root / f"source{len(sources)}.png"
                Image.new("RGB", (8, 8), (len(sources) % 256, 0, 0)).save(source)
                sources.append(str(source))
            os.link(sources[-1], f"{base}/{i:07d}.png")
            made += 1


def timed_build(root: Path, cache: Path) -> tuple[Any, float]:
    """The dataset as ``ssl run`` builds it, and the seconds ``ssl_build_dataset`` took.

    Loading the plugins and resolving the config come before and are not timed: they are the
    same for every dataset.
    """
    from benchmarks.common import OBSERVERS
    from ssl_core.config import build_config
    from ssl_core.plugins import get_plugins
    from ssl_core.training.engine import answer

    plugins = get_plugins(blocked=set(OBSERVERS))
    args = ["method=byol", "data=folder", f"data.path={root}", f"data.cache_dir={cache}"]
    config, selection = build_config(args, plugins.registry)
    with plugins.running(config, [selection.dataset]):
        started = time.perf_counter()
        data = answer(plugins, selection, "dataset", "ssl_build_dataset")
        return data, time.perf_counter() - started


def _read_heads(paths: list[str]) -> float:
    """Microseconds per file to open it, read 16 bytes and close it."""
    started = time.perf_counter()
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.read(fd, 16)
        finally:
            os.close(fd)
    return (time.perf_counter() - started) / max(len(paths), 1) * 1e6


def _cold_heads(root: Path, count: int) -> float:
    """:func:`_read_heads` on ``count`` distinct files whose pages left the page cache.

    Their inodes stay cached, so this is a lower bound for a disk nothing was read from.
    """
    where = root / "distinct"
    where.mkdir()
    payload = os.urandom(4096)
    paths = []
    for i in range(count):
        path = str(where / f"{i:06d}.png")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, payload)
            os.fdatasync(fd)  # only clean pages can be dropped
        finally:
            os.close(fd)
        paths.append(path)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return _read_heads(paths)


def measure(folders: int, per_folder: int, repeats: int = 3) -> FolderResult:
    from ssl_datasets.index import SETTLE_S

    timing: dict[str, float] = {}
    with removed_afterwards("ssl-bench-folder-", timing) as root:
        log(f"folder: making {folders} x {per_folder} hard links under {root}")
        started = time.perf_counter()
        _make_tree(root, folders, per_folder)
        build_s = time.perf_counter() - started
        # An index is saved only for folders that did not change in the last SETTLE_S
        # seconds (a change in the same timestamp tick would go unseen): wait that out, as a
        # dataset is not being written when training starts.
        time.sleep(SETTLE_S + 0.2)
        tree, cache = root / "tree", root / "index"
        warm_up = root / "warm-up"
        for name in ("a/0.png", "b/0.png"):
            (warm_up / name).parent.mkdir(parents=True)
            os.link(root / "source0.png", warm_up / name)
        timed_build(warm_up, root / "warm-up-index")  # imports, as any run has done by then
        log("folder: first open")
        data, first_s = timed_build(tree, cache)
        (index_file,) = cache.glob("*.npz")
        cached_s = []
        for _ in range(repeats):
            again, seconds = timed_build(tree, cache)
            cached_s.append(seconds)
        assert len(again.train) == len(data.train) and again.classes == data.classes
        images = len(data.train) + len(data.val or [])
        step = max(1, len(data.train) // 10_000)
        sample = [data.train.key(i) for i in range(0, len(data.train), step)]
        header_warm_us = _read_heads(sample)
        cold_files = 200 if per_folder * folders < 100_000 else 2000
        header_cold_us = _cold_heads(root, cold_files)
        result = FolderResult(
            folders=folders,
            per_folder=per_folder,
            build_s=build_s,
            first_s=first_s,
            cached_s=cached_s,
            index_mib=index_file.stat().st_size / 2**20,
            images=images,
            classes=len(data.classes or []),
            header_warm_us=header_warm_us,
            header_cold_us=header_cold_us,
            cold_files=cold_files,
        )
        del data, again
        log("folder: removing the tree")
    result.remove_s = timing["remove_s"]
    return result


def _verdict(measured: float, target: float) -> str:
    return "met" if measured <= target else "not met"


def report(result: FolderResult) -> str:
    cached = statistics.median(result.cached_s)
    big = result.entries >= 1_000_000
    rows = [
        ("making the tree (hard links)", f"{result.build_s:.1f} s", "", ""),
        (
            "first open: list every folder, save the index",
            f"{result.first_s:.2f} s",
            f"≤ {FIRST_OPEN_TARGET_S:.0f} s",
            _verdict(result.first_s, FIRST_OPEN_TARGET_S) if big else "-",
        ),
        (
            f"cached open (median of {len(result.cached_s)})",
            f"{cached:.2f} s",
            f"≤ {CACHED_OPEN_TARGET_S:.0f} s",
            _verdict(cached, CACHED_OPEN_TARGET_S) if big else "-",
        ),
        ("index file", f"{result.index_mib:.1f} MiB", "", ""),
        (
            "reading 16 bytes of each file, warm page cache",
            f"{result.header_warm_us:.1f} µs/file = {result.header_warm_us:.1f} s per 1M files",
            "",
            "not done by the scan",
        ),
        (
            f"the same, {result.cold_files} files dropped from the page cache",
            f"{result.header_cold_us:.0f} µs/file = {result.header_cold_us:.0f} s per 1M files",
            "",
            "not done by the scan",
        ),
        ("removing the tree", f"{result.remove_s:.1f} s", "", ""),
    ]
    title = (
        f"### Folder scan: data=folder over {result.entries:,} entries "
        f"({result.folders:,} folders x {result.per_folder:,} files; "
        f"{result.images:,} images, {result.classes:,} classes)"
    )
    return title + "\n\n" + table(["measure", "time", "target", ""], rows)
