"""Where each sample of a tar shard lies: a header walk with ``os.pread``, cached per shard.

A shard is indexed once: its 512-byte member headers are read (never the image data), the
members are grouped into samples exactly as webdataset groups them when streaming (the key is
the member name up to the first dot of its file name, :func:`webdataset.tariterators.
base_plus_ext`), and for every sample the image member's offset and size and the label of its
``.cls`` member are kept. The index is cached as one ``.npz`` file per shard, named after a
hash of the shard's real path, size and modification time, and written atomically, so a
changed shard is indexed again and processes that build the same index at once do no harm.
About 0.1–0.2 s per 10,000 samples to build, a few milliseconds to load.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ssl_core import UserError

from .index import cache_folder as _cache_folder
from .scan import IMAGE_EXTENSIONS as _FILE_EXTENSIONS

#: Member extensions (after the key's first dot, lowercased) that hold a sample's image.
IMAGE_EXTENSIONS: tuple[str, ...] = tuple(e.lstrip(".") for e in _FILE_EXTENSIONS)

#: Bumped when the cached layout or its meaning changes: older cache files are then ignored.
FORMAT = 1

_BLOCK = 512
_REGULAR = (b"0", b"\0", b"7")
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZ": "bzip2", b"\xfd7": "xz", b"\x28\xb5": "zstd"}


@dataclass
class ShardIndex:
    """The samples of one shard that hold an image, in member order.

    ``offsets``/``sizes`` (int64) locate each sample's image member's data in the file,
    ``exts`` (uint8) is its extension's position in :data:`IMAGE_EXTENSIONS`, ``labels``
    (int64) the integer in its ``.cls`` member or -1 without one, and ``keys`` the UTF-8
    sample keys end to end with ``key_ends`` (int64) where each ends. ``no_image`` samples
    had no image member (the first one is ``no_image_key``); ``damage`` says why the walk
    stopped before the end of the archive ("" when it did not).
    """

    offsets: np.ndarray
    sizes: np.ndarray
    exts: np.ndarray
    labels: np.ndarray
    keys: np.ndarray
    key_ends: np.ndarray
    no_image: int = 0
    no_image_key: str = ""
    damage: str = ""

    def __len__(self) -> int:
        return len(self.offsets)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ShardIndex:
        values = {}
        for f in fields(cls):
            value = arrays[f.name]
            values[f.name] = value.item() if value.ndim == 0 else value
        return cls(**values)


# --- the header walk ---------------------------------------------------------------------------


def _number(field: bytes) -> int:
    """A tar header number: octal ASCII, or base-256 when the first byte's top bit is set."""
    if field[:1] and field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.rstrip(b"\0 ").lstrip(b" ")
    return int(text, 8) if text else 0


def _checksum_ok(header: bytes) -> bool:
    try:
        stored = _number(header[148:156])
    except ValueError:
        return False
    return stored == sum(header[:148]) + 8 * 32 + sum(header[156:])


def _pax_records(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    while data:
        length_text, _, _ = data.partition(b" ")
        length = int(length_text)
        line, data = data[:length], data[length:]
        key, _, value = line.split(b" ", 1)[1].rstrip(b"\n").partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
    return records


def tar_members(fd: int, end: int, path: str) -> tuple[list[tuple[str, int, int]], str]:
    """``[(name, data offset, size)]`` of the regular files of an uncompressed tar, and damage.

    Reads the headers only (and pax and GNU long-name records). Handles ustar prefixes, pax
    ``path``/``size`` records and GNU ``L`` names. The walk stops at the end-of-archive block,
    at a header whose checksum is wrong, or at a member that runs past the end of the file;
    the second value then says where and why ("" for a complete archive).

    :raises UserError: when the file does not start with a tar header (not a tar, or a
        compressed one, which cannot be read by position).
    """
    members: list[tuple[str, int, int]] = []
    start = os.pread(fd, _BLOCK, 0)
    if start and not (len(start) == _BLOCK and (_checksum_ok(start) or not any(start))):
        kind = _COMPRESSED.get(start[:2])
        if kind is not None:
            raise UserError(
                f"{path} is a {kind}-compressed tar; shards are read by position, so they "
                "must be uncompressed .tar files (decompress them)"
            )
        raise UserError(f"{path} is not a tar file (it does not start with a tar header)")
    offset, pax, long_name = 0, {}, None
    while offset + _BLOCK <= end:
        header = start if offset == 0 else os.pread(fd, _BLOCK, offset)
        if not any(header):
            return members, ""
        if not _checksum_ok(header):
            return members, f"an invalid tar header at byte {offset}"
        flag = header[156:157]
        size = _number(header[124:136])
        if flag in (b"x", b"L"):
            data = os.pread(fd, size, offset + _BLOCK)
            if flag == b"x":
                pax = _pax_records(data)
            else:
                long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif flag in _REGULAR:
            size = int(pax.get("size", size))
            name = pax.get("path") or long_name
            if name is None:
                name = header[:100].rstrip(b"\0").decode("utf-8", "surrogateescape")
                prefix = header[345:500].rstrip(b"\0")
                if header[257:262] == b"ustar" and prefix:
                    name = prefix.decode("utf-8", "surrogateescape") + "/" + name
            if offset + _BLOCK + size > end:
                return members, f"member {name} runs past the end of the file"
            members.append((name, offset + _BLOCK, size))
            pax, long_name = {}, None
        else:  # directories, links, global pax headers, ...
            if flag != b"g":
                pax, long_name = {}, None
        offset += _BLOCK + (size + _BLOCK - 1) // _BLOCK * _BLOCK
    if offset < end:
        return members, f"the file ends inside a header at byte {offset}"
    # tar writers end an archive with zero blocks; without them the file was likely cut short
    return members, ("no end-of-archive marker: the file may be cut short" if end else "")


def index_shard(path: str) -> ShardIndex:
    """The :class:`ShardIndex` of one shard, read from the file.

    :raises UserError: on what would make a sample ambiguous: a key whose members are not
        together, several images in one sample, a key with a dot (webdataset cuts keys at the
        first dot, so ``img.000.png`` and ``img.001.png`` would be one sample), a ``.cls``
        member that is not a non-negative integer.
    """
    from webdataset.tariterators import base_plus_ext

    fd = os.open(path, os.O_RDONLY)
    try:
        members, damage = tar_members(fd, os.fstat(fd).st_size, path)
        offsets: list[int] = []
        sizes: list[int] = []
        exts: list[int] = []
        labels: list[int] = []
        keys: list[bytes] = []
        no_image, no_image_key = 0, ""
        seen: set[str] = set()

        def close(key: str, group: list[tuple[str, str, int, int]]) -> None:
            nonlocal no_image, no_image_key
            images = [m for m in group if m[1] in IMAGE_EXTENSIONS]
            if not images:
                dotted = [m[0] for m in group if m[1].rsplit(".", 1)[-1] in IMAGE_EXTENSIONS]
                if dotted:
                    raise UserError(
                        f"{path}: the members {', '.join(dotted[:3])} make one sample '{key}' "
                        "with no plain image extension: webdataset keys end at the first dot "
                        "of the file name, so keys must not contain dots (rename them, e.g. "
                        "img_000.png)"
                    )
                no_image += 1
                no_image_key = no_image_key or key
                return
            if len(images) > 1:
                names = ", ".join(m[0] for m in images)
                raise UserError(f"{path}: sample '{key}' has several images ({names}); keep one")
            _, ext, offset, size = images[0]
            label = -1
            for name, member_ext, cls_offset, cls_size in group:
                if member_ext == "cls":
                    text = os.pread(fd, cls_size, cls_offset)
                    try:
                        label = int(text.decode("ascii").strip())
                    except (UnicodeDecodeError, ValueError):
                        label = -2
                    if label < 0:
                        raise UserError(
                            f"{path}: {name} holds {text[:20]!r}, not a class number "
                            "(a .cls member is a non-negative integer in ASCII)"
                        )
            offsets.append(offset)
            sizes.append(size)
            exts.append(IMAGE_EXTENSIONS.index(ext))
            labels.append(label)
            keys.append(key.encode("utf-8", "surrogateescape"))

        key, group = None, []
        for name, offset, size in members:
            member_key, ext = base_plus_ext(name)
            if member_key is None or os.path.basename(member_key).startswith("__"):
                continue
            if member_key != key:
                if key is not None:
                    close(key, group)
                if member_key in seen:
                    raise UserError(
                        f"{path}: the members of sample '{member_key}' are not next to each "
                        "other; webdataset needs each sample's files together in the tar"
                    )
                seen.add(member_key)
                key, group = member_key, []
            group.append((name, ext.lower(), offset, size))
        if key is not None:
            close(key, group)
    finally:
        os.close(fd)
    return ShardIndex(
        offsets=np.asarray(offsets, dtype=np.int64),
        sizes=np.asarray(sizes, dtype=np.int64),
        exts=np.asarray(exts, dtype=np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        keys=np.frombuffer(b"".join(keys), dtype=np.uint8).copy(),
        key_ends=np.cumsum([len(k) for k in keys], dtype=np.int64),
        no_image=no_image,
        no_image_key=no_image_key,
        damage=damage,
    )


# --- the cache ---------------------------------------------------------------------------------


def cache_folder(cache_dir: str | None) -> Path:
    """Where shard indexes are kept (``tar-index`` of :func:`ssl_datasets.index.cache_folder`)."""
    return _cache_folder(cache_dir, "tar-index")


def cache_file(cache_dir: Path, path: str) -> Path:
    """The cache file of ``path`` as it is now: its real path, size and mtime name it."""
    stat = os.stat(path)
    identity = f"{FORMAT}|{os.path.realpath(path)}|{stat.st_size}|{stat.st_mtime_ns}"
    tag = hashlib.sha1(identity.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return Path(cache_dir) / f"{os.path.basename(path)}.{tag}.npz"


def _load(file: Path) -> ShardIndex | None:
    try:
        with np.load(file, allow_pickle=False) as saved:
            return ShardIndex.from_arrays({name: saved[name] for name in saved.files})
    except FileNotFoundError:
        return None
    except Exception:  # a damaged cache file is rebuilt, never trusted
        return None


def _save(file: Path, index: ShardIndex) -> None:
    # the core's atomic writer (moving to ssl_core.files): temporary file, fsync, rename
    from ssl_core import write_atomic

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **index.arrays())

    write_atomic(file, write)


#: Indexing shorter than this shows nothing.
SHOW_AFTER_S = 2.0
#: Off a terminal (logs, SLURM output files), one line this often.
PLAIN_EVERY_S = 10.0


class _Progress:
    """Indexing progress on stderr, once it has taken :data:`SHOW_AFTER_S` seconds: a line
    updated in place on a terminal, a plain line every :data:`PLAIN_EVERY_S` otherwise, and
    one closing line with the totals."""

    def __init__(self, total: int) -> None:
        self.total, self.started = total, time.monotonic()
        self.tty = sys.stderr.isatty()
        self.next_at = self.started + SHOW_AFTER_S
        self.shown = False

    def update(self, done: int, samples: int) -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        self.shown = True
        self.next_at = now + (0.2 if self.tty else PLAIN_EVERY_S)
        line = (
            f"indexing tar shards: {done}/{self.total}, {samples:,} samples so far "
            f"({now - self.started:.0f} s)"
        )
        print("\r" + line if self.tty else line, end="" if self.tty else "\n", file=sys.stderr)

    def done(self, samples: int, cache_dir: Path | None) -> None:
        if not self.shown:
            return
        where = f"; cached in {cache_dir}" if cache_dir is not None else " (not cached)"
        plural = "s" if self.total != 1 else ""
        print(
            ("\r" if self.tty else "")
            + f"indexed {self.total} tar shard{plural} ({samples:,} samples) in "
            f"{time.monotonic() - self.started:.1f} s{where}",
            file=sys.stderr,
            flush=True,
        )


def index_shards(paths: Sequence[str], cache_dir: Path | None) -> list[ShardIndex]:
    """The index of every shard, from the cache when it holds the shard as it is now.

    Shards missing from the cache are indexed (with a progress line) and written to it. A
    cache folder that cannot be written is reported once; the index is then kept in memory.
    """
    indexes: list[ShardIndex | None] = []
    files: list[Path | None] = []
    for path in paths:
        file = cache_file(cache_dir, path) if cache_dir is not None else None
        files.append(file)
        indexes.append(_load(file) if file is not None else None)
    missing = [i for i, index in enumerate(indexes) if index is None]
    if not missing:
        return indexes  # type: ignore[return-value]
    progress = _Progress(len(missing))
    samples = 0
    for done, i in enumerate(missing, start=1):
        index = indexes[i] = index_shard(paths[i])
        samples += len(index)
        file = files[i]
        if file is not None:
            try:
                _save(file, index)
            except OSError as exc:
                print(
                    f"warning: cannot write the shard index cache in {cache_dir} "
                    f"({exc.strerror or exc}); shards are indexed again in every run "
                    "(set data.cache_dir to a writable folder)",
                    file=sys.stderr,
                )
                cache_dir = None
                files = [None] * len(files)
        progress.update(done, samples)
    progress.done(samples, cache_dir)
    return indexes  # type: ignore[return-value]
