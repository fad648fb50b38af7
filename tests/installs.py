"""Packages installed as a third party installs them, into a folder put on ``PYTHONPATH``.

``pip install --target`` with no network and no build isolation: the environment running the
tests is left as it was.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ssl-plugin-example"


def pip_install(source: Path, target: Path) -> Path:
    """``source`` (a project folder) installed into ``target``; returns ``target``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target
