"""ssl_core from Python: the same runs, evaluations and encoders as the ``ssl`` command.

Errors a user can cause are raised as :class:`ssl_core.UserError` (one line), not exits.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_core.errors import UserError

if TYPE_CHECKING:
    import torch

    from ssl_core.plugins import Plugins


def _plugins(plugins: Plugins | None) -> Plugins:
    from ssl_core.plugins import get_plugins

    return plugins if plugins is not None else get_plugins()


def _key_values(overrides: Mapping[str, Any] | None) -> list[str]:
    """``{"data.path": "images"}`` as ``["data.path=images"]`` (booleans and null as YAML)."""
    args = []
    for key, value in (overrides or {}).items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif value is None:
            value = "null"
        args.append(f"{key}={value}")
    return args


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
