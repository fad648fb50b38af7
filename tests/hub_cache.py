"""A Hugging Face hub cache laid out as ``hf_hub_download`` writes it, for tests without network."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def build_fake_hf_cache(cache_dir: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """``cache_dir/models--{org}--{name}/{blobs,refs,snapshots}`` holding ``files``.

    ``refs/main`` holds the commit with no trailing newline (with one, the hub's cache lookup
    misses); each snapshot file is a relative symlink to its blob, named by its sha256.
    """
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot
