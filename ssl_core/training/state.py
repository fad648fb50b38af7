"""The state of a run on disk: seeding, step checkpoints, the final files, and restoring them.

A checkpoint holds everything a run needs to continue exactly: model and optimizer state,
step, epoch and batch within the epoch, every process's random state, the resolved config and
the MLflow run id (:mod:`ssl_core.training.resume` finds and checks them).
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_core.errors import RunFailed, UserError
from ssl_core.training import distributed

if TYPE_CHECKING:
    from ssl_core.training.engine import Trainer


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (every device) with ``seed``."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of process ``rank`` (at optimizer step ``step``) in a run seeded with ``seed``.

    Processes draw different random numbers for what happens on the device (batched view
    augmentations, dropout); the model itself starts equal everywhere.
    """
    import numpy as np

    state = np.random.SeedSequence([seed % 2**63, rank, step]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def save(trainer: Trainer) -> Path:
    """Write a step checkpoint atomically and drop the oldest beyond ``keep_checkpoints``."""
    from ssl_core.training.resume import checkpoint_path, rng_state

    run = trainer.run
    path = checkpoint_path(run.output_dir, run.step)
    if trainer.last_checkpoint == path:
        return path
    # Trackers store everything up to this step first, so that a run resumed from this
    # checkpoint neither repeats nor misses a logged step.
    trainer.notify("ssl_checkpoint", run=run, path=path)
    # Every process's random state goes in, so each continues its own stream on resume;
    # taken after the trackers ran, as a run continuing from here would find it.
    ranks = distributed.gather_objects(rng_state())
    if trainer.main:
        _write(trainer, path, ranks)
    # No process goes on (or exits) before the checkpoint is complete on disk.
    distributed.barrier()
    trainer.last_checkpoint = path
    return path


def _write(trainer: Trainer, path: Path, ranks: list[dict[str, Any]] | None) -> None:
    from ssl_core.config import to_yaml
    from ssl_core.training.checkpoint import FORMAT, save_checkpoint
    from ssl_core.training.resume import step_checkpoints

    run = trainer.run
    state = {
        "format": FORMAT,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "step": run.step,
        "total_steps": run.total_steps,
        "steps_per_epoch": run.steps_per_epoch,
        "epoch": run.epoch,
        "batch_in_epoch": run.extra.get("batch_in_epoch", 0),
        "nonfinite": trainer.nonfinite,
        "rng": ranks[0] if ranks else None,
        "rng_ranks": ranks,
        "world_size": trainer.world,
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "config": to_yaml(trainer.config),
        "mlflow_run_id": run.tracking_run_id,
        "encoder_prefix": run.encoder_prefix,
        "knn_top1_init": run.extra.get("knn_top1_init"),
    }
    try:
        save_checkpoint(path, state)
    except OSError as exc:
        kept = trainer.last_checkpoint or "none written yet"
        raise RunFailed(
            f"cannot write checkpoint {path}: {exc.strerror or exc}; "
            f"the previous checkpoint is intact: {kept}"
        ) from None
    for old in step_checkpoints(run.output_dir)[: -trainer.config.trainer.keep_checkpoints]:
        if old != run.keep_checkpoint:  # pinned by a lifecycle plugin (RunContext)
            old.unlink(missing_ok=True)


def publish_final(trainer: Trainer) -> None:
    """``checkpoint.pt`` and ``encoder.safetensors`` in the run directory, for users."""
    from ssl_core.files import write_atomic
    from ssl_core.training.checkpoint import save_weights

    run = trainer.run
    final = run.output_dir / "checkpoint.pt"
    source = save(trainer)
    if not trainer.main:
        return

    def link(tmp: Path) -> None:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    run.artifacts["checkpoint"] = write_atomic(final, link)
    run.artifacts["encoder"] = save_weights(run.output_dir / "encoder.safetensors", run.encoder)


def restore(trainer: Trainer, state: dict[str, Any], path: Path) -> None:
    """Put the run back where ``state`` (the checkpoint at ``path``) left it."""
    from ssl_core.training.resume import set_rng_state

    run = trainer.run
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        if trainer.scaler is not None and state.get("scaler"):
            trainer.scaler.load_state_dict(state["scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        first = " ".join(str(exc).split())
        first = first if len(first) <= 240 else first[:237] + "..."
        forced = " (resume.force=true accepts other options, not another model)"
        raise UserError(
            f"cannot resume from {path}: its weights do not fit this run's model: {first}; "
            "use the checkpoint's method and backbone"
            + (forced if trainer.config.resume.force else "")
        ) from None
    run.step, run.epoch = state["step"], state["epoch"]
    run.extra["batch_in_epoch"] = state["batch_in_epoch"]
    run.tracking_run_id = state.get("mlflow_run_id")
    run.resumed_from = path
    trainer.nonfinite = state.get("nonfinite", 0)
    trainer.last_checkpoint = path
    ranks = state.get("rng_ranks") or [state["rng"]]
    if len(ranks) == trainer.world:
        set_rng_state(ranks[trainer.rank])
    else:
        # Same global batch, other split: the data and schedule are the run's, but the
        # processes' random streams cannot be carried over one to one.
        seed_everything(rank_seed(trainer.config.trainer.seed, trainer.rank, run.step))
        if trainer.main:
            print(
                f"note: {path} was written by {len(ranks)} processes, this run has "
                f"{trainer.world}; same global batch, data order and schedule, but device-side "
                "random draws (batched augmentations) differ from the uninterrupted run",
                file=sys.stderr,
            )
    if trainer.main:
        print(f"resuming from {path} at step {run.step}/{run.total_steps}", file=sys.stderr)
