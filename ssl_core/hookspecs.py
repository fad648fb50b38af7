"""Every hook of ssl_core: what it is for, when the engine calls it, who returns what.

There are three kinds of hook.

*Registration hooks* (``ssl_register_*``) run once, when the plugin manager is built. A plugin
hands named components to the registry through the ``register`` callable it is given::

    register(name, factory, *, options=None, description="", views=None, default=False,
             matches=None, catalog=None, auto_for=(), defaults=None)

``factory`` is called once per run and returns the component's *run plugin*: an object whose
``@hookimpl`` methods answer the step hooks below for that run. Like a hookimpl, the factory
takes only the arguments it needs, by name: ``options`` (an instance of the ``options``
dataclass, with the run's values; see :func:`ssl_core.option`), ``config`` (the whole resolved
config, read-only) and ``name`` (the name the user selected it by). The options become the
component's config group: the method's own group named after it (``byol.tau_base``), or the
``backbone``, ``augment`` and ``data`` groups.

*Step hooks* are ``firstresult`` hooks. For each run the engine registers only the selected
components' run plugins (one method, one backbone, one view generator, one dataset), so exactly
one of them answers; other plugins may still wrap a step with ``wrapper=True``. A run plugin
was built with its options and config, so step hooks are not given the config again.

*Lifecycle hooks* are called on every plugin that implements them (trackers, monitors,
progress); their return values are ignored.

Hookimpl parameters must not have defaults (pluggy passes arguments by name).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    import torch
    from omegaconf import DictConfig

    from ssl_core.data import ImageData
    from ssl_core.methods.param_groups import ParamGroup
    from ssl_core.training.run import RunContext, StepInfo

hookspec = pluggy.HookspecMarker("ssl_core")

Register = Callable[..., None]


# --- registration -------------------------------------------------------------------------


@hookspec
def ssl_register_methods(register: Register) -> None:
    """Offer SSL methods (selected by ``method=NAME``).

    A method's run plugin implements :func:`ssl_build_heads` and :func:`ssl_compute_loss`, and
    may implement :func:`ssl_param_groups` and :func:`ssl_update_target`. Its options form the
    config group named after the method (``byol.tau_base``). ``views=2`` (or a range
    ``(2, None)``) says how many views per image the loss takes; the core checks the view
    generator against it before any work.

    :param register: ``register(name, factory, options=..., views=..., description=...,
        defaults={"optim.lr": ...})``; ``defaults`` is the method's recipe for other groups.
    """


@hookspec
def ssl_register_backbones(register: Register) -> None:
    """Offer encoders (selected by ``backbone=NAME``); the run plugin implements
    :func:`ssl_build_backbone` and may implement :func:`ssl_export_hint`. Options join the
    ``backbone`` group.

    :param register: as for :func:`ssl_register_methods`; ``matches``/``catalog`` register a
        family answering for many names (e.g. every timm model); ``default="resnet18"`` makes
        the family, with that name, the backbone of a run that names none.
    """


@hookspec
def ssl_register_view_generators(register: Register) -> None:
    """Offer view generators (selected by ``augment=NAME``); the run plugin implements
    :func:`ssl_sample_transform` and :func:`ssl_make_views`. Options join the ``augment``
    group.

    :param register: as for :func:`ssl_register_methods`; ``auto_for=("cuda",)`` makes the
        generator the choice of ``augment=auto`` on those device types; ``views=2`` (or
        ``views=lambda options: 2 + options.local_crops_number``) says how many views it makes.
    """


@hookspec
def ssl_register_datasets(register: Register) -> None:
    """Offer datasets (selected by ``data=NAME``); the run plugin implements
    :func:`ssl_build_dataset`. Options join the ``data`` group.

    :param register: as for :func:`ssl_register_methods`; ``default=True`` makes the dataset
        the one of a run that names none.
    """


# --- step hooks (answered by the selected components) -------------------------------------


@hookspec(firstresult=True)
def ssl_build_dataset() -> ImageData:
    """Load the images to train on, and a labelled held-out split when there is one.

    Called once, before the model is built.

    :return: an :class:`ssl_core.data.ImageData`.
    """


@hookspec(firstresult=True)
def ssl_sample_transform() -> Callable[[Any], dict[str, Any]]:
    """The per-sample transform run in DataLoader workers on the CPU.

    Called once per run. The returned callable must be picklable; it takes one image (a
    ``uint8`` ``HxWx3`` numpy array of any size) and returns a dict of tensors or lists of
    tensors of one size per position (``{"views": [uint8 [3,S,S], uint8 [3,S,S]]}``, with
    ``S = data.image_size``), which the default collate batches for :func:`ssl_make_views`:
    the views made whole here, or their geometry here and the rest on the device. Before each
    call the loader seeds torch, numpy and
    ``random`` from the sample's own seed (a function of ``trainer.seed``, the epoch and the
    sample's place in it): draw randomness from those RNGs (or seed private generators from
    them) so that views do not depend on the number of workers and a resumed run sees the
    same views.
    """


@hookspec(firstresult=True)
def ssl_make_views(batch: dict[str, Any]) -> list[torch.Tensor]:
    """Turn a collated batch, already on the training device, into the views of the method.

    Called once per training step. Each view is ``float32 [B,3,H,W]`` in ``[0, 1]``, with
    random parameters drawn per sample; the engine normalizes them. Views may differ in size
    (multi-crop).

    :param batch: the collated output of :func:`ssl_sample_transform` plus ``"label"``.
    """


@hookspec(firstresult=True)
def ssl_build_backbone() -> torch.nn.Module:
    """Build the online encoder: ``[B,3,S,S]`` normalized images to ``[B, D]`` features.

    Called once per run. The module must expose ``num_features`` (``D``, an int); the core
    checks it. The engine keeps a reference to it: it is the encoder that is evaluated and
    exported. The core then loads ``backbone.weights`` into it, when given; a backbone's own
    published weights are its ``pretrained`` option (turned off by the core when it rebuilds
    an encoder to load a run's trained weights into it).
    """


@hookspec(firstresult=True)
def ssl_export_hint(path: Path) -> str:
    """How to load an exported encoder file outside ssl_core, for the terminal.

    Called by ``ssl export`` on the backbone's run plugin after writing ``path`` (the
    encoder's ``state_dict`` as safetensors). Without an answer ssl_core says to load it into
    the same module with ``load_state_dict``.

    :param path: the file written.
    """


@hookspec(firstresult=True)
def ssl_build_heads(backbone: torch.nn.Module) -> torch.nn.Module:
    """Build the method's model around the online encoder.

    Called once per run, after :func:`ssl_build_backbone`. The returned module owns the
    encoder (the same object), the heads, and any target network. Parameters that must not be
    trained (the target) have ``requires_grad=False``; the optimizer gets all the others. A
    model with an :class:`ssl_core.EMA` attribute has its targets updated by the core.

    :param backbone: the online encoder (it has an int ``num_features``).
    """


@hookspec(firstresult=True)
def ssl_param_groups(model: torch.nn.Module) -> list[ParamGroup]:
    """The model's trainable parameters in groups with their own optimization rules.

    Called once per run, after the model is on its device. Without an answer the core uses
    :func:`ssl_core.param_groups` of the model (biases and normalization parameters without
    weight decay or LARS adaptation, everything else by ``optim.*``).

    :param model: the module returned by :func:`ssl_build_heads`.
    :return: :class:`ssl_core.ParamGroup` objects covering every trainable parameter once.
    """


@hookspec(firstresult=True)
def ssl_compute_loss(
    model: torch.nn.Module, views: list[torch.Tensor], info: StepInfo
) -> dict[str, torch.Tensor]:
    """Forward the views through the model and return the loss to minimize.

    Called once per micro-batch, in training mode. ``model`` is the module returned by
    :func:`ssl_build_heads` itself; under data-parallel training its call ``model(...)`` goes
    through ``DistributedDataParallel``, so call it once per micro-batch and do the whole
    forward pass in it.

    :param model: the module returned by :func:`ssl_build_heads`.
    :param views: normalized views from :func:`ssl_make_views`.
    :param info: where the run is: ``step`` (optimizer steps taken, 0 for the first),
        ``epoch`` (0-based), ``steps_per_epoch``, ``total_steps``.
    :return: ``{"loss": scalar tensor, ...}``; other scalar entries are logged as metrics.
    """


@hookspec(firstresult=True)
def ssl_update_target(model: torch.nn.Module, info: StepInfo) -> dict[str, float]:
    """Update the target network, right after each optimizer step.

    Optional: without an answer the core updates the targets the model declares with an
    :class:`ssl_core.EMA` attribute (or does nothing when it declares none).

    :param model: the module returned by :func:`ssl_build_heads` (the same object the loss
        hook gets).
    :param info: as for :func:`ssl_compute_loss`; ``info.step`` is the step just made (0 after
        the first).
    :return: scalars to log (e.g. ``{"tau": 0.996}``).
    """


# --- lifecycle hooks (trackers, monitors) --------------------------------------------------


@hookspec
def ssl_validate_config(config: DictConfig) -> None:
    """Check the resolved config before any work starts (no data loaded, no run created).

    Called once per run, on every plugin that implements it and on the selected components'
    run plugins. Raise :class:`ssl_core.UserError` with one line naming the bad value and
    what would be valid.

    :param config: the resolved run config.
    """


@hookspec
def ssl_run_start(run: RunContext) -> None:
    """The run is set up (model, optimizer, data) and training is about to begin.

    :param run: the run's context; ``run.config`` is the resolved config.
    """


@hookspec
def ssl_step_end(run: RunContext, step: int, metrics: dict[str, float]) -> None:
    """An optimizer step (and the target update) finished.

    :param run: the run's context.
    :param step: optimizer steps taken so far (1 after the first step).
    :param metrics: ``loss``, ``lr`` (and ``lr/<group>``, ``wd/<group>``), the target update's
        scalars, and the loss hook's extras.
    """


@hookspec
def ssl_epoch_end(run: RunContext, epoch: int, metrics: dict[str, float]) -> None:
    """A pass over the training data finished.

    Monitors implement it with ``@hookimpl(tryfirst=True)`` and may add their scalars to
    ``metrics`` (``knn/top1``); trackers, called after them, log everything in it.

    :param run: the run's context.
    :param epoch: epochs finished (1 after the first).
    :param metrics: epoch aggregates, e.g. mean ``loss`` and ``img_per_s``, and the monitors'.
    """


@hookspec
def ssl_checkpoint(run: RunContext, path: Path) -> None:
    """A checkpoint of ``run.step`` is about to be written to ``path``.

    Trackers store everything logged so far here: a run resumed from this checkpoint then
    neither repeats nor misses a step of the metric history.

    :param run: the run's context.
    :param path: where the checkpoint goes.
    """


@hookspec
def ssl_run_end(run: RunContext, status: str, metrics: dict[str, float]) -> None:
    """The run ended; artifacts named in ``run.artifacts`` are written.

    :param run: the run's context.
    :param status: ``"FINISHED"``, ``"FAILED"`` or ``"KILLED"``.
    :param metrics: final metrics (e.g. ``knn_top1`` and ``knn_top1_init``).
    """
