"""Checks before any work: a mistake is one line and exit 2 with nothing started or written.

:func:`check_before_work` runs before data is listed, a model built or a process started: the
plugins' ``ssl_validate_config`` (the MLflow store among them), where the run directory goes,
and how many processes the machine can take. :func:`probe_views` checks, on one batch and
before the run starts, the views of a view generator that does not declare how many it makes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ssl_core.errors import ConfigError, UserError
from ssl_core.paths import check_writable_folder

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ssl_core.plugins import Plugins
    from ssl_core.training.engine import Trainer


def check_before_work(config: DictConfig, plugins: Plugins) -> None:
    """Every check that needs no data and no model (run inside ``plugins.running``)."""
    plugins.hook.ssl_validate_config(config=config)
    check_output_dir(config)
    check_devices(config)


def check_output_dir(config: DictConfig) -> None:
    """The run directory can be made and written (a name too long for the filesystem is most
    often the default ``runs/<tracking.run_name>``)."""
    check_writable_folder(
        Path(str(config.output_dir)),
        "output_dir",
        "give a writable folder (output_dir=DIR), or a shorter tracking.run_name",
    )


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def check_devices(config: DictConfig) -> None:
    """``trainer.devices`` no more than the machine has (outside a launcher)."""
    from ssl_core.config import resolve_device
    from ssl_core.training import distributed

    devices = int(config.trainer.devices)
    if devices == 1 or distributed.launched_world_size() > 1:
        return
    device = resolve_device(str(config.trainer.device))
    if device == "cuda":
        import torch

        have, what = torch.cuda.device_count(), "CUDA devices"
    elif device == "cpu":
        have, what = _cpu_count(), "CPU cores"
    else:
        have, what = 1, f"{device} device"
    if devices > have:
        raise ConfigError(
            f"trainer.devices={devices} but this machine has {have} {what} for "
            f"trainer.device={config.trainer.device}; give at most trainer.devices={have}"
        )


def probe_views(trainer: Trainer) -> None:
    """The method takes as many views as the view generator makes, checked before the run.

    When both declare the number, the config already checked it. When only the method does,
    one batch is made into views here, with every random state put back afterwards, so a
    mismatch is one line and exit 2 before any MLflow run, and the run is unchanged.

    :raises UserError: naming both and the counts.
    """
    from ssl_core.config import component_options

    method, generator = trainer.selection.method, trainer.selection.view_generator
    if method.views is None:
        return
    if generator.views_made(component_options(generator, trainer.config)) is not None:
        return
    from ssl_core.data.loader import to_device
    from ssl_core.training.resume import rng_state, set_rng_state

    saved = rng_state()
    try:
        batch = to_device(next(iter(trainer.loader)), trainer.run.device)
        made = len(trainer.answer("view_generator", "ssl_make_views", batch=batch))
    finally:
        set_rng_state(saved)
    low, high = method.views
    if made < low or (high is not None and made > high):
        takes = f"{low}" if low == high else f"{low} to {high or 'any number'}"
        raise UserError(
            f"method={method.name} takes {takes} views per image but augment={generator.name} "
            f"made {made}; choose a view generator that makes {takes} (augment=NAME)"
        )
