"""ssl_core from Python: the same runs, evaluations, embeddings and encoders as the ``ssl`` command.

::

    import ssl_core

    result = ssl_core.train(method="byol", backbone="resnet18", data="folder",
                            overrides={"data.path": "images", "trainer.epochs": 10})
    encoder = ssl_core.load_encoder(result.run_id)          # a torch.nn.Module
    emb = ssl_core.embed(result.run_id, "images")           # Embeddings: .embeddings [N, D]
    ssl_core.evaluate(result.run_id, "linear")              # {"metrics": {...}, ...}

Every function takes the options the command line takes, as a mapping (``{"trainer.epochs":
10}``) or as ``key=value`` strings, validated the same way. Errors a user can cause are raised
as :class:`ssl_core.UserError` (one line; :class:`ssl_core.ConfigError` for the config), never
as exits; a run stopped by Ctrl-C (SIGINT) writes a checkpoint and raises
:class:`~ssl_core.errors.RunInterrupted`. The ``ssl`` command is a thin layer over these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_core import console, hookimpl
from ssl_core.errors import UserError

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from ssl_core.config import Selection
    from ssl_core.config.files import Layer
    from ssl_core.evaluation.embeddings import Embeddings
    from ssl_core.plugins import Plugins

#: Options as a mapping (``{"trainer.epochs": 10}``) or as ``["trainer.epochs=10", ...]``.
Overrides = Mapping[str, Any] | Sequence[str] | None
#: A config file, or a mapping of the same keys (nested or dotted), or several, merged in order.
ConfigSource = str | Path | Mapping[str, Any] | Sequence[str | Path | Mapping[str, Any]]


@dataclass
class TrainResult:
    """What :func:`train` returns: where the run is and how it ended.

    ``run_id`` is the MLflow run's id (None with ``tracking.enabled=false``); ``output_dir``
    holds ``config.yaml``, ``checkpoint.pt`` and ``encoder.safetensors``; ``metrics`` the final
    ``knn_top1``, ``knn_top1_init``, ``final_loss``; ``config`` the resolved config.
    """

    run_id: str | None
    output_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    config: Any = field(default=None, repr=False)

    def load_encoder(self) -> torch.nn.Module:
        """The run's trained encoder (see :func:`load_encoder`)."""
        return load_encoder(self.output_dir)


def _plugins(plugins: Plugins | None) -> Plugins:
    from ssl_core.plugins import get_plugins

    return plugins if plugins is not None else get_plugins()


def _key_values(overrides: Overrides) -> list[str]:
    """``{"data.path": "images"}`` as ``["data.path=images"]``; strings are kept as given."""
    from ssl_core.config.files import as_override

    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        return [as_override(str(key), value) for key, value in overrides.items()]
    if isinstance(overrides, str):
        raise UserError(f"overrides={overrides!r}: give a mapping or a list of key=value strings")
    return [str(item) for item in overrides]


def _selectors(**chosen: Any) -> list[str]:
    return [f"{group}={value}" for group, value in chosen.items() if value is not None]


def config_layers(
    args: Sequence[str], *, config: ConfigSource | None, from_run: str | None, plugins: Plugins
) -> list[Layer]:
    """The layers of a run's config, lowest first: ``from_run``'s config, the config files,
    ``args`` (the command line), and for ``resume=RUN`` the run's own config underneath."""
    from ssl_core.config.files import Layer, file_layer, overrides_of
    from ssl_core.config.resolve import parse_overrides, parse_value
    from ssl_core.experiments.rerun import from_layer, resume_layers
    from ssl_core.experiments.store import DEFAULT_URI

    sources = [] if config is None else config
    if isinstance(sources, (str, Path, Mapping)):
        sources = [sources]
    given = [
        Layer("config", overrides_of(source)) if isinstance(source, Mapping) else file_layer(source)
        for source in sources
    ]
    given.append(Layer(None, list(args)))
    # what the files and the command line say about where runs are, before a run is read
    settings = {key: raw for layer in given for key, raw in parse_overrides(layer.args)}
    where = {
        k: parse_value(k, settings[k])
        for k in ("tracking.uri", "resume.path", "output_dir")
        if k in settings
    }
    uri = str(where.get("tracking.uri") or DEFAULT_URI)
    layers = [from_layer(str(from_run), uri, plugins.versions())] if from_run is not None else []
    layers += given
    resume, output = where.get("resume.path"), where.get("output_dir")
    if resume not in (None, ""):
        if from_run is not None:
            raise UserError(
                f"--from starts a new run and resume={resume} continues one; give one of them"
            )
        found = resume_layers(str(resume), None if output is None else str(output), uri)
        if found is not None:
            base, pointer = found
            layers = [base, *layers, pointer]
    return layers


def resolve(
    args: Sequence[str],
    *,
    config: ConfigSource | None = None,
    from_run: str | None = None,
    plugins: Plugins | None = None,
) -> tuple[DictConfig, Selection]:
    """The resolved config and components of a run given as ``key=value`` arguments."""
    from ssl_core.config.files import build_layered

    console.quiet_setup()  # under torchrun, rank 0 alone says the setup's notes and warnings

    plugins = _plugins(plugins)
    layers = config_layers(args, config=config, from_run=from_run, plugins=plugins)
    return build_layered(layers, plugins.registry)


def resolve_config(
    method: str | None = None,
    backbone: str | None = None,
    data: str | None = None,
    *,
    overrides: Overrides = None,
    config: ConfigSource | None = None,
    from_run: str | None = None,
    plugins: Plugins | None = None,
) -> DictConfig:
    """The resolved config :func:`train` would run, every default filled in (read-only).

    :raises ConfigError: naming the bad key and, when it came from a file, the file.
    """
    args = _selectors(method=method, backbone=backbone, data=data) + _key_values(overrides)
    return resolve(args, config=config, from_run=from_run, plugins=plugins)[0]


class _RunIdRecorder:
    """Remembers the tracking run's id when a run ends (lifecycle plugin of one run)."""

    def __init__(self) -> None:
        self.run_id: str | None = None

    @hookimpl
    def ssl_run_end(self, run: Any, status: str, metrics: dict[str, float]) -> None:
        self.run_id = run.tracking_run_id


def _recorded_run_id(output_dir: Path) -> str | None:
    """The MLflow run id in a run directory's final checkpoint (a run of several processes)."""
    path = output_dir / "checkpoint.pt"
    if not path.is_file():
        return None
    import torch

    return torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("mlflow_run_id")


def train(
    method: str | None = None,
    backbone: str | None = None,
    data: str | None = None,
    *,
    overrides: Overrides = None,
    config: ConfigSource | None = None,
    from_run: str | None = None,
    plugins: Plugins | None = None,
) -> TrainResult:
    """Pretrain an encoder, as ``ssl run`` does; returns where the run went and its metrics.

    :param method: ``method=NAME`` (``"byol"``); likewise ``backbone`` and ``data``.
    :param overrides: any other options: ``{"data.path": "images", "trainer.epochs": 10}``;
        ``{"resume": RUN, "trainer.epochs": 200}`` continues a run (a finished one for longer).
    :param config: a YAML file (or a mapping) of options under ``overrides`` (``--config``).
    :param from_run: a run (MLflow id, run directory, checkpoint or config.yaml) whose resolved
        config is the base, as a new run (``--from``).
    :raises UserError: for a bad option, data or source, before any work; a failed run raises
        :class:`~ssl_core.errors.RunFailed`.
    """
    plugins = _plugins(plugins)
    args = _selectors(method=method, backbone=backbone, data=data) + _key_values(overrides)
    cfg, selection = resolve(args, config=config, from_run=from_run, plugins=plugins)
    return run(cfg, selection, plugins)


def run(cfg: DictConfig, selection: Selection, plugins: Plugins) -> TrainResult:
    """Train with a resolved config (see :func:`resolve`)."""
    from ssl_core.training.engine import train as train_run

    recorder = _RunIdRecorder()
    name = plugins.pm.register(recorder, name=f"api-run-id-{id(recorder)}")
    try:
        metrics = train_run(cfg, selection, plugins)
    finally:
        plugins.pm.unregister(name=name)
    output_dir = Path(cfg.output_dir)
    run_id = recorder.run_id
    if run_id is None and cfg.tracking.enabled:
        run_id = _recorded_run_id(output_dir)
    return TrainResult(run_id=run_id, output_dir=output_dir, metrics=dict(metrics), config=cfg)


def _backbone_config(name: str, overrides: Mapping[str, Any] | None, plugins: Plugins) -> Any:
    """A config holding only the ``backbone`` group: ``name`` and its options' values."""
    from omegaconf import OmegaConf

    from ssl_core.config.resolve import parse_value

    component = plugins.registry.get("backbone", name)
    group = OmegaConf.structured(component.options) if component.options else OmegaConf.create()
    for key, value in (overrides or {}).items():
        leaf = key.removeprefix("backbone.")
        if not key.startswith("backbone.") or leaf not in group:
            valid = ", ".join(f"backbone.{k}" for k in group) or "none"
            raise UserError(f"unknown option '{key}' for backbone '{name}'; valid: {valid}")
        group[leaf] = parse_value(key, str(value)) if isinstance(value, str) else value
    return OmegaConf.create({"backbone": {"name": name, **OmegaConf.to_container(group)}})


def load_encoder(
    source: str | Path,
    *,
    backbone: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    tracking_uri: str | None = None,
    plugins: Plugins | None = None,
) -> torch.nn.Module:
    """The pretrained encoder of ``source``, a ``torch.nn.Module`` in eval mode.

    :param source: an MLflow run id (looked up in ``tracking_uri``, default
        ``sqlite:///mlflow.db``), a run directory, a checkpoint, or an encoder's safetensors
        file (an ``encoder.safetensors`` beside its run's ``config.yaml``, or any file with
        ``backbone=`` naming the architecture).
    :param backbone: for a safetensors file without its run's config: the backbone name,
        built by its plugin with ``overrides`` (``{"backbone.small_input": True}``).
    :raises UserError: when the source is not found or its weights do not fit.
    """
    from ssl_core.evaluation.sources import encoder_from_weights, load_source
    from ssl_core.experiments.store import DEFAULT_URI

    plugins = _plugins(plugins)
    path = Path(source).expanduser()
    if backbone is not None:
        if path.suffix != ".safetensors" or not path.is_file():
            raise UserError(f"backbone= goes with a safetensors file; {source} is not one")
        config = _backbone_config(backbone, overrides, plugins)
        encoder = encoder_from_weights(path, config, str(source), plugins)
    else:
        encoder = load_source(str(source), plugins, tracking_uri or DEFAULT_URI).encoder
    return encoder.eval()


def _source_args(source: str | Path | None, tracking_uri: str | None) -> list[str]:
    args = [f"run={source}"] if source is not None else []
    return args + ([f"tracking.uri={tracking_uri}"] if tracking_uri else [])


def embed(
    source: str | Path,
    images: str | Path | Sequence[Any] | None = None,
    *,
    out: str | Path | None = None,
    head: str | None = None,
    overrides: Overrides = None,
    tracking_uri: str | None = None,
    plugins: Plugins | None = None,
) -> Embeddings:
    """The embeddings of images by the pretrained encoder of ``source``, as ``ssl embed``.

    :param source: an MLflow run id, a run directory or a checkpoint.
    :param images: a folder of images (``data=folder``), a sequence of images (``uint8
        HxWx3`` numpy arrays or PIL images), or None for the run's own dataset (or the one
        ``overrides`` names: ``{"data": "digits"}``).
    :param out: also write them to this ``.parquet``, ``.npy`` or ``.safetensors`` file
        (atomically), logged to MLflow as an evaluation child run when ``source`` is a run id.
    :param head: also the output of this head of the method (``"projector"``).
    :return: :class:`~ssl_core.evaluation.embeddings.Embeddings`: ``embeddings`` ``[N, D]``,
        ``keys``, ``labels``, ``splits``; ``to_pandas()``, ``save(path)``.
    """
    from ssl_core.evaluation.embed import embed as embed_args

    args = _source_args(source, tracking_uri) + _key_values(overrides)
    given = None
    if isinstance(images, (str, Path)):
        args += ["data=folder", f"data.path={images}"]
    elif images is not None:
        given = images
    if out is not None:
        args.append(f"out={out}")
    if head is not None:
        args.append(f"head={head}")
    embeddings, _ = embed_args(args, _plugins(plugins), images=given)
    return embeddings


def evaluate(
    source: str | Path | None,
    protocol: str = "knn",
    *,
    overrides: Overrides = None,
    tracking_uri: str | None = None,
    plugins: Plugins | None = None,
) -> dict[str, Any]:
    """Evaluate the encoder of ``source`` as ``ssl eval PROTOCOL`` (``knn``, ``linear``,
    ``finetune``); returns its metrics and the MLflow runs involved."""
    from ssl_core.evaluation.evaluate import evaluate as evaluate_args

    args = _source_args(source, tracking_uri) + _key_values(overrides)
    return evaluate_args(protocol, args, _plugins(plugins))


def export(
    source: str | Path | None,
    out: str | Path | None = None,
    *,
    overrides: Overrides = None,
    tracking_uri: str | None = None,
    plugins: Plugins | None = None,
) -> dict[str, Any]:
    """Write the encoder of ``source`` as safetensors (``out``, default
    ``encoder.safetensors``), as ``ssl export``; returns what was written and how to load it."""
    from ssl_core.evaluation.export import export as export_args

    args = _source_args(source, tracking_uri) + _key_values(overrides)
    args += [f"out={out}"] if out is not None else []
    return export_args(args, _plugins(plugins))
