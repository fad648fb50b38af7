"""Continuing a finished run for more epochs: ``ssl run resume=RUN trainer.epochs=200``.

A run that finished its ``trainer.epochs`` (or ``trainer.max_steps``) may be resumed with a
longer length; every other key that changes the math must stay the checkpoint's, as for any
resume. The model, optimizer state (momentum buffers), step, data position and RNGs are
restored as for an interrupted run, and training goes on from the step it ended at.

Schedule: the learning rate, weight decay and τ are functions of ``(step, total_steps)``
(:func:`ssl_core.training.optim.lr_at`, :func:`ssl_core.cosine_tau`), and a continued run
computes them with the new ``total_steps``: from the step the run finished at, each step gets
the value a run planned for the new length from the start would have at that step (the second
half of a 200-epoch cosine after a finished 100-epoch run: the learning rate comes back up
from ~0 to half its base value, then decays to 0 again; τ goes from ~1 back to the middle of
its cosine, then rises to 1). The first part of the run followed the old, shorter schedule, so
the result is not the run that was planned for 200 epochs from the start.

Tracking: the continuation is a child MLflow run of the finished run (tagged
``ssl.continued_from``), holding the new config as its params (the finished run's params,
which MLflow cannot change, stay true to what it ran) and the metrics from the next step on,
numbered after the parent's. Its artifacts are the longer run's checkpoint and encoder; the
parent keeps its own.

An interrupted run (not finished) resumes only with its own length: that keeps its bitwise
guarantee.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from ssl_core.errors import ConfigError
from ssl_core.training.resume import check_same_math

if TYPE_CHECKING:
    from ssl_core.training.engine import Trainer

#: The keys a continuation may change: how long the run is.
LENGTH_KEYS = ("trainer.epochs", "trainer.max_steps")


def planned_steps(config: Any, steps_per_epoch: int) -> int:
    """The optimizer steps of a run: its epochs, or ``trainer.max_steps`` when fewer."""
    trainer = config.trainer
    total = steps_per_epoch * trainer.epochs
    return min(total, trainer.max_steps) if trainer.get("max_steps") else total


def finished(saved: Any, state: dict[str, Any]) -> bool:
    """Whether the checkpoint ``state`` (of a run with config ``saved``) is its run's end."""
    if "total_steps" in state:
        return state["step"] >= state["total_steps"]
    # checkpoints written before ssl_core kept the run's length
    trainer = saved.trainer
    if state["epoch"] >= trainer.epochs:
        return True
    return bool(trainer.get("max_steps")) and state["step"] >= trainer.max_steps


def goes_on(config: Any, state: dict[str, Any]) -> bool:
    """Whether a run with ``config`` has steps left after the checkpoint ``state``."""
    if "steps_per_epoch" in state:
        return state["step"] < planned_steps(config, state["steps_per_epoch"])
    trainer = config.trainer
    return state["epoch"] < trainer.epochs and (
        not trainer.max_steps or state["step"] < trainer.max_steps
    )


def _length(config: Any) -> str:
    trainer = config.trainer
    steps = f", trainer.max_steps={trainer.max_steps}" if trainer.get("max_steps") else ""
    return f"trainer.epochs={trainer.epochs}{steps}"


@dataclass
class Continuation:
    """A finished run going on for longer: where it stood and what it was."""

    path: Path
    step: int
    epoch: int
    before: str  # the finished run's length, as keys
    parent_run_id: str | None

    def begin(self, trainer: Trainer) -> None:
        """After the checkpoint is restored: a child MLflow run, and a note on the schedule."""
        from ssl_core.training.optim import lr_at

        run = trainer.run
        run.extra["continued_from"] = self.parent_run_id
        run.tracking_run_id = None  # trackers open a new (child) run
        if not trainer.main:
            return
        group = run.optimizer.param_groups[0]
        lr = lr_at(run.step, run.total_steps, trainer.warmup_steps, group["base_lr"])
        print(
            f"continuing {self.path}: the run finished at step {self.step} "
            f"({self.before}) and goes on to step {run.total_steps} "
            f"({_length(trainer.config)}); learning rate and τ follow the schedule of a "
            f"{run.total_steps}-step run from step {self.step} on (learning rate {lr:.4g} "
            "at the first step)",
            file=sys.stderr,
        )


def check_resume(
    config: DictConfig, state: dict[str, Any] | None, path: Path | None, *, world_size: int
) -> Continuation | None:
    """Check that the run may resume from ``state``; a :class:`Continuation` when it is a
    finished run asked to go on for longer, else None.

    :raises ConfigError: for a key that changes the math (see
        :func:`~ssl_core.training.resume.check_same_math`), a length that adds no step to a
        finished run, or a new length for a run that has not finished.
    """
    if state is None:
        return None
    saved = OmegaConf.create(state["config"])
    saved_world = state.get("world_size", 1)
    lengthened = [
        k for k in LENGTH_KEYS if OmegaConf.select(saved, k) != OmegaConf.select(config, k)
    ]
    if not lengthened:
        check_same_math(config, saved, path, world_size=world_size, saved_world_size=saved_world)
        return None
    done = finished(saved, state)
    if not config.resume.force:
        if not done:
            raise ConfigError(
                f"cannot resume {path} with {_length(config)}: the run stopped at step "
                f"{state['step']} before finishing its {_length(saved)}; resume it with its own "
                "length first, then continue it with the longer one (or pass resume.force=true)"
            )
        if not goes_on(config, state):
            raise ConfigError(
                f"cannot continue {path} with {_length(config)}: the run already finished "
                f"with {_length(saved)} at step {state['step']}; give a longer trainer.epochs "
                "(and trainer.max_steps=0 or a larger one)"
            )
    # every other key is checked as for any resume, the length taken as the checkpoint's
    same_length = OmegaConf.create(OmegaConf.to_container(config))
    for key in lengthened:
        OmegaConf.update(same_length, key, OmegaConf.select(saved, key), merge=False)
    check_same_math(same_length, saved, path, world_size=world_size, saved_world_size=saved_world)
    if not (done and goes_on(config, state)):
        return None  # resume.force on an unfinished run: a plain resume with the new length
    return Continuation(
        path=Path(path),
        step=int(state["step"]),
        epoch=int(state["epoch"]),
        before=_length(saved),
        parent_run_id=state.get("mlflow_run_id"),
    )
