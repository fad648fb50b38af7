"""What a checkpoint must hold to continue a run exactly, and finding the one to continue.

A resumed run restores the model, optimizer, step and data position, and every RNG, so with
``trainer.deterministic=true`` it ends bitwise equal to the run that was never interrupted.
"""

from __future__ import annotations

import math
import random
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from ssl_core.errors import ConfigError, UserError
from ssl_core.training import distributed

CHECKPOINT_DIR = "checkpoints"
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")

#: Keys that do not change the math of training; a resumed run may change them freely.
FREE_KEYS = (
    "output_dir",
    "resume.",
    "tracking.",
    "eval.",
    "trainer.log_every",
    "trainer.num_workers",
    "trainer.checkpoint_every",
    "trainer.keep_checkpoints",
    "trainer.device",
    "trainer.skip_nonfinite",
    "trainer.collapse",
    "data.strict",
    "data.cache_dir",
    "trainer.compile",
    "trainer.devices",
)

#: Keys whose product with the number of processes is the global batch: a run may resume with
#: another split of the same global batch (another number of processes, say).
BATCH_KEYS = ("trainer.batch_size", "trainer.accumulate")


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop draws from, as tensors and plain values."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(_as_tuple(state["python"]))
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def step_checkpoints(output_dir: Path) -> list[Path]:
    """The step checkpoints of a run directory, oldest first."""
    folder = Path(output_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_path(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / CHECKPOINT_DIR / f"step-{step:08d}.pt"


def newest_checkpoint(folder: Path) -> Path | None:
    """What a run directory resumes from: its newest step checkpoint, else its final
    ``checkpoint.pt``; None when it holds neither."""
    found = step_checkpoints(folder)
    if found:
        return found[-1]
    final = folder / "checkpoint.pt"
    return final if final.is_file() else None


def find_resume(config: DictConfig) -> Path | None:
    """The checkpoint ``resume.path`` asks for: ``auto`` → newest in ``output_dir`` or none."""
    wanted = config.resume.path
    if wanted is None:
        return None
    if wanted == "auto":
        found = step_checkpoints(Path(config.output_dir))
        return found[-1] if found else None
    path = Path(wanted).expanduser()
    if path.is_dir():
        found = newest_checkpoint(path)
        if found is None:
            raise UserError(f"resume.path '{wanted}' holds no checkpoint (checkpoints/step-*.pt)")
        return found
    if not path.exists():
        raise UserError(
            f"resume.path '{wanted}' does not exist; give a checkpoint file, "
            "a run directory, or resume=auto"
        )
    return path


def _math_items(config: DictConfig) -> dict[str, Any]:
    from ssl_core.config import flatten

    return {
        k: v
        for k, v in flatten(config).items()
        if not k.startswith(FREE_KEYS) and k not in BATCH_KEYS
    }


def _batch_split(config: DictConfig, world_size: int) -> tuple[int, int, int]:
    trainer = config.trainer
    return int(trainer.batch_size), world_size, int(trainer.get("accumulate", 1))


def check_same_math(
    config: DictConfig,
    saved_config: DictConfig,
    path: Path,
    *,
    world_size: int = 1,
    saved_world_size: int = 1,
) -> None:
    """Refuse to resume when a key that changes the math differs from the checkpoint's config.

    The global batch (``trainer.batch_size`` × processes × ``trainer.accumulate``) must be the
    checkpoint's; how it is split may differ (then a note says the run continues with the same
    data order and schedule, though not bitwise).

    :raises ConfigError: naming every differing key, unless ``resume.force=true``.
    """
    before = _batch_split(saved_config, saved_world_size)
    after = _batch_split(config, world_size)
    if config.resume.force:
        return
    shown_split = "{} per process x {} processes x accumulate {} = {}".format
    if math.prod(before) != math.prod(after):
        raise ConfigError(
            f"cannot resume from {path}: the global batch differs "
            f"({shown_split(*before, math.prod(before))} -> "
            f"{shown_split(*after, math.prod(after))}); keep the global batch, e.g. "
            "trainer.batch_size or trainer.accumulate to match, or pass resume.force=true"
        )
    if before != after and distributed.rank() == 0:
        print(
            f"note: resuming {shown_split(*before, math.prod(before))} as "
            f"{shown_split(*after, math.prod(after))}: the same global batch, data order and "
            "schedule; BatchNorm statistics and rounding make it close to, not bitwise, "
            "the uninterrupted run",
            file=sys.stderr,
        )
    saved = _math_items(saved_config)
    current = _math_items(config)
    keys = sorted(set(saved) | set(current))
    differing = [k for k in keys if saved.get(k, "<absent>") != current.get(k, "<absent>")]
    if differing:
        shown = ", ".join(
            f"{k} ({saved.get(k, '<absent>')} -> {current.get(k, '<absent>')})" for k in differing
        )
        raise ConfigError(
            f"cannot resume from {path}: the config differs in {shown}; "
            "use the checkpoint's values or pass resume.force=true"
        )
