"""A pretrained encoder and the config of the run that trained it, from wherever it is.

A source is a checkpoint file, a run directory (its ``checkpoint.pt``, or its
``encoder.safetensors`` and ``config.yaml``), or an MLflow run id looked up in
``tracking.uri``. The encoder is rebuilt by the run's backbone plugin and gets the online
encoder's weights.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_core.errors import UserError

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from ssl_core.plugins import Plugins


@dataclass
class Source:
    """A pretrained encoder with the resolved config of the run that trained it.

    ``run_id`` is the pretraining run's MLflow id when known; ``in_store`` says that the run
    was found in the tracking store being used (evaluations then nest under it).
    """

    encoder: torch.nn.Module
    config: DictConfig
    spec: str
    run_id: str | None = None
    in_store: bool = False
    experiment_id: str | None = None


#: Backbone options that give an encoder its starting weights, turned off when an encoder is
#: rebuilt to receive a run's trained weights: those replace them, and loading a run must not
#: need the file, run or weight cache it started from (``pretrained`` is the name backbone
#: plugins use for "the model's own published weights"; see docs/plugins.md).
STARTING_WEIGHTS = {"weights": None, "pretrained": False}


def build_encoder(config: Any, plugins: Plugins) -> torch.nn.Module:
    """A fresh encoder as the run's backbone component builds it from ``config``, without its
    starting weights (:data:`STARTING_WEIGHTS`): randomly initialized, seeded by the caller."""
    from omegaconf import OmegaConf

    config = OmegaConf.create(OmegaConf.to_container(config))
    for key, off in STARTING_WEIGHTS.items():
        if key in config.backbone:
            config.backbone[key] = off
    component = plugins.registry.get("backbone", str(config.backbone.name))
    with plugins.running(config, [component]):
        encoder = plugins.hook.ssl_build_backbone()
    if encoder is None:
        raise RuntimeError(f"backbone '{component.name}' built nothing")
    return encoder


def _load_weights(encoder: torch.nn.Module, weights: dict[str, Any], spec: str, name: str) -> None:
    from ssl_core.training.warm_start import load_strict

    load_strict(encoder, weights, f"the weights of {spec}", name)


def _from_checkpoint(path: Path, spec: str, plugins: Plugins) -> Source:
    from omegaconf import OmegaConf

    from ssl_core.training.checkpoint import load_checkpoint

    try:
        state = load_checkpoint(path)
    except Exception as exc:
        first = " ".join(str(exc).split())[:200]
        raise UserError(f"{spec} is not an ssl_core checkpoint: {first}") from None
    from ssl_core.training.warm_start import encoder_state

    config = OmegaConf.create(state["config"])
    encoder = build_encoder(config, plugins)
    _load_weights(encoder, encoder_state(state), spec, str(config.backbone.name))
    return Source(encoder, config, spec, run_id=state.get("mlflow_run_id"))


def encoder_from_weights(
    weights_path: Path, config: Any, spec: str, plugins: Plugins
) -> torch.nn.Module:
    """The backbone of ``config`` with the safetensors weights at ``weights_path``."""
    from safetensors.torch import load_file

    encoder = build_encoder(config, plugins)
    _load_weights(encoder, load_file(str(weights_path)), spec, str(config.backbone.name))
    return encoder


def _from_weights(weights_path: Path, config_path: Path, spec: str, plugins: Plugins) -> Source:
    from omegaconf import OmegaConf

    config = OmegaConf.load(config_path)
    return Source(encoder_from_weights(weights_path, config, spec, plugins), config, spec)


def _from_path(path: Path, spec: str, plugins: Plugins) -> Source:
    if path.is_dir():
        if (path / "checkpoint.pt").is_file():
            return _from_checkpoint(path / "checkpoint.pt", spec, plugins)
        if (path / "encoder.safetensors").is_file() and (path / "config.yaml").is_file():
            return _from_weights(path / "encoder.safetensors", path / "config.yaml", spec, plugins)
        raise UserError(
            f"{spec} is a directory without checkpoint.pt or encoder.safetensors + config.yaml"
        )
    if path.suffix == ".safetensors":
        config_path = path.parent / "config.yaml"
        if not config_path.is_file():
            raise UserError(
                f"{spec} needs the run's config.yaml beside it to know its backbone; or pass "
                "the run directory, its checkpoint.pt or its MLflow run id"
            )
        return _from_weights(path, config_path, spec, plugins)
    return _from_checkpoint(path, spec, plugins)


def _from_run(run_id: str, uri: str, plugins: Plugins) -> Source:
    from ssl_core.experiments.store import get_run, open_store, quiet_downloads

    client = open_store(uri)
    mlrun = get_run(client, run_id, uri)
    names = {a.path for a in client.list_artifacts(run_id)}
    with tempfile.TemporaryDirectory(prefix="ssl-eval-") as tmp, quiet_downloads():
        if {"encoder", "config"} <= names:
            weights = client.download_artifacts(run_id, "encoder/encoder.safetensors", tmp)
            config = client.download_artifacts(run_id, "config/config.yaml", tmp)
            source = _from_weights(Path(weights), Path(config), run_id, plugins)
        elif "checkpoint" in names:
            path = client.download_artifacts(run_id, "checkpoint/checkpoint.pt", tmp)
            source = _from_checkpoint(Path(path), run_id, plugins)
        else:
            raise UserError(
                f"run {run_id} ({mlrun.info.status}) has no encoder, config or checkpoint "
                "artifacts; evaluate a finished run or its checkpoint file"
            )
    source.run_id, source.in_store = run_id, True
    source.experiment_id = mlrun.info.experiment_id
    return source


def load_source(spec: str, plugins: Plugins, tracking_uri: str) -> Source:
    """The encoder of ``spec``: a checkpoint, a run directory, weights, or an MLflow run id.

    :raises UserError: when ``spec`` is none of them, or its weights do not fit its backbone.
    """
    if not spec:
        raise UserError("name the pretrained encoder with run=RUN_ID or run=PATH/checkpoint.pt")
    path = Path(spec).expanduser()
    if path.exists():
        return _from_path(path, spec, plugins)
    looks_like_path = "/" in spec or spec.endswith((".pt", ".safetensors", ".yaml"))
    if looks_like_path:
        raise UserError(f"run={spec}: no such file or directory")
    return _from_run(spec, tracking_uri, plugins)
