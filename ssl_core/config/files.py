"""Config from files and earlier runs, merged under the command line.

``ssl run --config exp.yaml key=value ...`` reads a YAML file holding the same keys as the
command line, nested (``trainer: {epochs: 10}``) or dotted (``trainer.epochs: 10``), with
OmegaConf interpolations resolved; the command line's keys win. ``--from RUN`` and
``resume=RUN`` start from a run's resolved config the same way. Each source is a
:class:`Layer`; :func:`build_layered` merges them (later layers win, key by key) and resolves
the result exactly as the command line is resolved, so a file is validated as strictly. An
error caused by a key of a file names the file.

A run's resolved config (``lenient`` layers) holds every option of the components it used; a
later layer that selects another component (``method=simclr``) drops the options that
component does not have, which a file written by hand never does silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ssl_core.config.resolve import (
    Selection,
    _flat_keys,
    _schema,
    _select,
    build_config,
    parse_overrides,
    parse_value,
)
from ssl_core.errors import ConfigError
from ssl_core.registry import Registry


@dataclass
class Layer:
    """``key=value`` overrides from one source: the command line (``origin`` None), a file, or
    a run's resolved config (``lenient``: keys the final components lack are dropped)."""

    origin: str | None
    args: list[str] = field(default_factory=list)
    lenient: bool = False


def as_override(key: str, value: Any) -> str:
    """``key=raw`` such that the command line's parsing gives ``value`` back."""
    if value is None:
        raw = "null"
    elif isinstance(value, bool):
        raw = "true" if value else "false"
    elif isinstance(value, (int, float)):
        raw = repr(value)
    elif isinstance(value, str):
        raw = value
        try:
            same = parse_value(key, raw) == value
        except ConfigError:
            same = False
        if not same:  # "1.5", "true", "a: b": quoted, as YAML reads them back as strings
            raw = "'" + value.replace("'", "''") + "'"
    else:  # lists and mappings in flow style
        raw = OmegaConf.to_yaml(OmegaConf.create({"v": value})).strip()[len("v: ") :]
    return f"{key}={raw}"


def flat_items(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``[("trainer.epochs", 10), ...]`` for every leaf of a nested mapping."""
    items: list[tuple[str, Any]] = []
    for key, value in tree.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items.extend(flat_items(value, full + "."))
        else:
            items.append((full, value))
    return items


def overrides_of(tree: Mapping[str, Any]) -> list[str]:
    """A nested mapping of config keys as ``key=value`` overrides."""
    return [as_override(key, value) for key, value in flat_items(tree)]


def read_yaml(path: str | Path, shown: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path``, interpolations resolved.

    :raises ConfigError: naming ``shown`` when the file is missing, not YAML or not a mapping.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"{shown} {what}; give a YAML file of config keys")
    import yaml

    try:
        loaded = OmegaConf.load(path)
        tree = OmegaConf.to_container(loaded, resolve=True)
    except (OmegaConfBaseException, yaml.YAMLError, ValueError, OSError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{shown} is not a valid YAML config: {reason}") from None
    if not isinstance(tree, dict):
        raise ConfigError(
            f"{shown} holds a {type(tree).__name__}, not a mapping of config keys "
            "(e.g. trainer: {epochs: 10})"
        )
    return tree


def file_layer(path: str | Path) -> Layer:
    """The layer of ``--config PATH``."""
    shown = str(path)
    return Layer(shown, overrides_of(read_yaml(path, f"--config {shown}")))


def _pairs(layer: Layer) -> list[tuple[str, str]]:
    try:
        return parse_overrides(layer.args)
    except ConfigError as exc:
        raise _attributed(exc, layer.origin) from None


def merged(layers: Sequence[Layer]) -> tuple[list[str], dict[str, str | None]]:
    """The overrides of ``layers``, later layers winning key by key, and where each came from."""
    values: dict[str, str] = {}
    origins: dict[str, str | None] = {}
    for layer in layers:
        for key, raw in _pairs(layer):
            values.pop(key, None)  # keep the order in which the winning values were given
            values[key], origins[key] = raw, layer.origin
    return [f"{k}={v}" for k, v in values.items()], origins


def _valid_keys(args: list[str], registry: Registry) -> set[str]:
    """Every config key of the components ``args`` select."""
    wanted = {key: parse_value(key, raw) for key, raw in parse_overrides(args)}
    selection, _ = _select(registry, wanted)
    root = {name: OmegaConf.structured(dc) for name, dc in _schema(selection).items()}
    return set(_flat_keys(OmegaConf.create(root))) | {"output_dir"}


def _attributed(exc: ConfigError, origin: str | None) -> ConfigError:
    return ConfigError(f"{origin}: {exc}") if origin else exc


def _blamed(message: str, origins: Mapping[str, str | None]) -> str | None:
    """Where the key ``message`` is about came from: the key named first in it (a "did you
    mean" suggestion comes later), and its source (None for the command line)."""
    first: tuple[int, str | None] | None = None
    for key, origin in origins.items():
        group, _, leaf = key.partition(".")
        named = [f"'{key}'", f"{key}=", f" {key} "] + ([f"({group}="] if leaf == "name" else [])
        found = [at for at in (message.find(n) for n in named) if at >= 0]
        if found and (first is None or min(found) < first[0]):
            first = (min(found), origin)
    return first[1] if first else None


def build_layered(
    layers: Iterable[Layer], registry: Registry, *, report: bool = True
) -> tuple[Any, Selection]:
    """Resolve the merged ``layers`` as :func:`~ssl_core.config.build_config` resolves a
    command line; an error caused by a key of a file names the file.

    A file's value that a later layer overrides is checked too (a file is valid or not
    whatever overrides it today).
    """
    layers = list(layers)
    args, origins = merged(layers)
    lenient = {layer.origin for layer in layers if layer.lenient}
    try:
        if lenient:
            valid = _valid_keys(args, registry)
            args = [
                a
                for a in args
                if (key := a.partition("=")[0]) in valid or origins.get(key) not in lenient
            ]
        built = build_config(args, registry, report=report)
    except ConfigError as exc:
        raise _attributed(exc, _blamed(str(exc), origins)) from None
    for layer in layers:
        if layer.origin is None or layer.lenient:
            continue
        for key, raw in _pairs(layer):
            if origins[key] == layer.origin:
                continue  # in the config just built
            try:
                build_config([*args, f"{key}={raw}"], registry, report=False)
            except ConfigError as exc:
                raise _attributed(exc, layer.origin) from None
    return built
