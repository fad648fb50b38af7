"""The run config: core options, the selected components' options, and ``key=value`` overrides.

The config is an OmegaConf tree built from typed dataclasses (see :func:`ssl_core.option`):
one group per part (``method``, ``backbone``, ``augment``, ``data``, ``optim``, ``trainer``,
``eval``, ``tracking``) plus a group named after the selected method for its own options
(``byol.tau_base``). Which components are selected decides which options exist, so the
selection is read from the overrides first, then the full schema is built and the overrides
are applied and checked. Every mistake is a :class:`~ssl_core.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ssl_core.config.groups import ROOT_KEYS, SELECTOR_GROUPS, TrainerOptions, core_groups
from ssl_core.errors import ConfigError, closest
from ssl_core.options import check_value, option_fields
from ssl_core.registry import Component, Registry

# --- overrides ------------------------------------------------------------------------------


#: Groups whose bare value sets another key: ``resume=auto`` is ``resume.path=auto``.
SHORTHAND_KEYS = {**{group: "name" for group in SELECTOR_GROUPS}, "resume": "path"}


def parse_overrides(args: list[str]) -> list[tuple[str, str]]:
    """Split ``key=value`` arguments; a bare group value goes to its shorthand key."""
    pairs = []
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"expected key=value, got '{arg}' (e.g. backbone=resnet18)")
        if key in SHORTHAND_KEYS:
            key = f"{key}.{SHORTHAND_KEYS[key]}"
        pairs.append((key, value))
    return pairs


def parse_value(key: str, value: str) -> Any:
    """The override's value with YAML typing (``true``, ``0.5``, ``null``), as OmegaConf does."""
    try:
        return OmegaConf.select(OmegaConf.from_dotlist([f"{key}={value}"]), key)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot parse {key}={value}: {exc}") from None


# --- selection ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The components a run uses, by kind."""

    method: Component
    backbone: Component
    view_generator: Component
    dataset: Component

    def items(self) -> list[tuple[str, Component]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; an unavailable device is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is available; use cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.device=mps but MPS is not available; use cpu or auto")
    return name


def _select(registry: Registry, wanted: dict[str, Any]) -> tuple[Selection, dict[str, str]]:
    """The components ``wanted`` names, and the names of the defaults taken for the others."""
    methods = registry.names("method")
    method_name = wanted.get("method.name")
    if method_name is None:
        if len(methods) != 1:
            valid = ", ".join(methods) or "none installed"
            raise ConfigError(f"no method given; choose one with method=NAME (valid: {valid})")
        method_name = methods[0]
    method = registry.get("method", str(method_name))
    # The method's recipe may choose the other components (DINO its multi-crop views); what
    # the user named wins.
    wanted = {**method.defaults, **wanted}
    augment = wanted.get("augment.name", "auto")
    if augment == "auto":
        device = str(wanted.get("trainer.device", "auto"))
        valid = {f.name: f for f in dataclasses.fields(TrainerOptions)}["device"]
        problem = check_value("trainer.device", device, valid)
        if problem:
            raise ConfigError(problem)
        device = resolve_device(device)
        view_generator = registry.auto("view_generator", device)
    else:
        view_generator = registry.get("view_generator", str(augment))
    chosen: dict[str, str] = {}
    for kind, key in (("backbone", "backbone.name"), ("dataset", "data.name")):
        if wanted.get(key) is None:
            component, chosen[key] = registry.default(kind)
        else:
            component = registry.get(kind, str(wanted[key]))
        chosen[kind] = component
    return Selection(
        method=method,
        backbone=chosen["backbone"],
        view_generator=view_generator,
        dataset=chosen["dataset"],
    ), {k: v for k, v in chosen.items() if "." in k}


# --- schema ---------------------------------------------------------------------------------


def typed_fields(dc: type | None) -> list[tuple[str, Any, dataclasses.Field]]:
    """``(name, type, field)`` with string annotations evaluated in the dataclass's module."""
    if dc is None:
        return []
    hints = typing.get_type_hints(dc)
    return [(f.name, hints[f.name], f) for f in dataclasses.fields(dc)]


def _merge_dataclass(name: str, core: type, extra: type | None) -> type:
    """One dataclass holding the core group's fields followed by a component's options."""
    spec = typed_fields(core)
    taken = {n for n, _, _ in spec}
    for item in typed_fields(extra):
        if item[0] in taken:
            raise ValueError(f"{extra.__qualname__} redefines core option '{name}.{item[0]}'")
        spec.append(item)
    return dataclasses.make_dataclass(name, spec)


def _schema(selection: Selection) -> dict[str, type]:
    groups = core_groups()
    schema = dict(groups)
    schema["backbone"] = _merge_dataclass(
        "BackboneConfig", groups["backbone"], selection.backbone.options
    )
    schema["augment"] = _merge_dataclass(
        "AugmentConfig", groups["augment"], selection.view_generator.options
    )
    schema["data"] = _merge_dataclass("DataConfig", groups["data"], selection.dataset.options)
    method_group = selection.method.name
    if method_group in schema or method_group in ROOT_KEYS:
        raise ValueError(f"method name '{method_group}' collides with a core config group")
    if selection.method.options is not None:
        schema[method_group] = selection.method.options
    return schema


def _flat_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for key in cfg:
        node = cfg[key] if not OmegaConf.is_missing(cfg, key) else None
        full = f"{prefix}{key}"
        if isinstance(node, DictConfig):
            keys.extend(_flat_keys(node, full + "."))
        else:
            keys.append(full)
    return keys


def _type_name(schema: dict[str, type], key: str) -> str:
    group, _, leaf = key.partition(".")
    for name, tp, _ in typed_fields(schema.get(group)):
        if name == leaf:
            return getattr(tp, "__name__", str(tp)).replace("typing.", "")
    return "value"


def _apply(cfg: DictConfig, schema: dict[str, type], key: str, raw: str) -> None:
    valid_keys = _flat_keys(cfg)
    if key not in valid_keys:
        hint = closest(key, valid_keys, n=1)
        where = f" (did you mean '{hint[0]}'?)" if hint else ""
        groups = ", ".join(sorted({k.split(".")[0] for k in valid_keys}))
        raise ConfigError(f"unknown config key '{key}'{where}; groups: {groups}")
    value = parse_value(key, raw)
    if isinstance(value, bool) and _type_name(schema, key) == "str":
        value = raw  # YAML reads off/on/yes/no as booleans; a str option keeps the word
    try:
        OmegaConf.update(cfg, key, value, merge=False)
    except OmegaConfBaseException:
        raise ConfigError(
            f"invalid value {key}={raw!r}: expected {_type_name(schema, key)}"
        ) from None


def _check_ranges(cfg: DictConfig, schema: dict[str, type]) -> None:
    for group, dc in schema.items():
        for f in option_fields(dc):
            problem = check_value(f"{group}.{f.name}", cfg[group][f.name], f)
            if problem:
                raise ConfigError(problem)


def _default_run_name(cfg: DictConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{cfg.method.name}-{cfg.backbone.name}-{stamp}"


def _run_dir_of(checkpoint: str) -> Path:
    """The run directory a checkpoint path belongs to (``DIR/checkpoints/step-N.pt`` → DIR)."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        return path
    if path.parent.name == "checkpoints":
        return path.parent.parent
    return path.parent


def _apply_method_defaults(
    cfg: DictConfig, selection: Selection, given: set[str], report: bool
) -> None:
    """Set the method's recipe (``register(..., defaults=...)``) on keys the user left alone.

    A key the selected components do not have cannot be honoured: it is said on stderr (when
    ``report``), naming the component that lacks it, and the component's own default applies.
    """
    method = selection.method
    present = set(_flat_keys(cfg))
    for key, value in method.defaults.items():
        if key in given:
            continue
        if key not in present:
            group = key.split(".")[0]
            kind = SELECTOR_GROUPS.get(group)
            if report and kind is not None and key != f"{group}.name":
                component = getattr(selection, kind)
                print(
                    f"note: method={method.name} recommends {key}={value}, which "
                    f"{kind.replace('_', ' ')} '{component.name}' has no option for; "
                    "its own behaviour applies",
                    file=sys.stderr,
                )
            continue
        try:
            OmegaConf.update(cfg, key, value, merge=False)
        except OmegaConfBaseException:
            raise ConfigError(
                f"method '{method.name}' (plugin '{method.provider}') has the invalid default "
                f"{key}={value!r}"
            ) from None


def component_options(component: Component, config: DictConfig) -> Any:
    """An instance of ``component``'s options dataclass holding the run's values (or None).

    The dataclass's own checks (``__post_init__``, e.g. a minimum above a maximum) run here.
    """
    if component.options is None:
        return None
    node = config[component.group]
    values = {}
    for f in dataclasses.fields(component.options):
        if f.name in node:
            value = node[f.name]
            if isinstance(value, (DictConfig, ListConfig)):
                value = OmegaConf.to_container(value, resolve=True)
            values[f.name] = value
    return component.options(**values)


def check_views(selection: Selection, generator_options: Any) -> None:
    """The method takes as many views as the view generator makes, when both declare it.

    :raises ConfigError: naming both, the counts, and view generators that would fit.
    """
    method, generator = selection.method, selection.view_generator
    if method.views is None:
        return
    made = generator.views_made(generator_options)
    low, high = method.views
    if made is None or (made >= low and (high is None or made <= high)):
        return
    takes = f"{low}" if low == high else f"{low} or more" if high is None else f"{low} to {high}"
    raise ConfigError(
        f"method={method.name} takes {takes} views per image but augment={generator.name} makes "
        f"{made}; choose a view generator that makes {takes} (augment=NAME)"
    )


def build_config(
    args: list[str], registry: Registry, *, report: bool = True
) -> tuple[DictConfig, Selection]:
    """Resolve ``key=value`` arguments against the installed components.

    :param report: say on stderr which of the method's recommended settings the selected
        components cannot honour.
    :return: the read-only resolved config and the selected components.
    :raises ConfigError: on an unknown key or component, a bad type or an out-of-range value,
        or a view generator making a number of views the method cannot take.
    """
    pairs = parse_overrides(args)
    wanted = {key: parse_value(key, raw) for key, raw in pairs}
    selection, chosen = _select(registry, wanted)
    schema = _schema(selection)
    root: dict[str, Any] = {name: OmegaConf.structured(dc) for name, dc in schema.items()}
    root["output_dir"] = None
    cfg = OmegaConf.create(root)
    OmegaConf.set_struct(cfg, True)
    _apply_method_defaults(cfg, selection, {key for key, _ in pairs}, report)
    for key, raw in pairs:
        _apply(cfg, schema, key, raw)
    _check_ranges(cfg, schema)
    # The resolved config names what was chosen, so a logged run says what actually ran.
    cfg.method.name = selection.method.name
    cfg.augment.name = selection.view_generator.name
    for key, name in chosen.items():
        OmegaConf.update(cfg, key, name, merge=False)
    options = {kind: component_options(c, cfg) for kind, c in selection.items()}
    check_views(selection, options["view_generator"])
    if cfg.tracking.run_name is None:
        cfg.tracking.run_name = _default_run_name(cfg)
    if cfg.output_dir is None and cfg.resume.path is not None:
        if cfg.resume.path == "auto":
            raise ConfigError("resume=auto needs output_dir=DIR, the run directory to continue")
        cfg.output_dir = str(_run_dir_of(cfg.resume.path))
    if cfg.output_dir is None:
        cfg.output_dir = f"runs/{cfg.tracking.run_name}"
    # one spelling of the run directory for everything that writes into it
    cfg.output_dir = os.path.expanduser(str(cfg.output_dir))
    OmegaConf.set_readonly(cfg, True)
    return cfg, selection


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)


def flatten(cfg: DictConfig) -> dict[str, Any]:
    """``{"group.key": value}`` for every leaf (MLflow params)."""
    return {k: OmegaConf.select(cfg, k) for k in _flat_keys(cfg)}
