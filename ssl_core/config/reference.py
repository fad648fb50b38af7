"""``ssl config --reference``: every option of the core and of each installed component."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from ssl_core.config.groups import SELECTOR_GROUPS, core_groups
from ssl_core.config.resolve import typed_fields
from ssl_core.registry import Component, Registry


def _bounds(field: dataclasses.Field) -> str:
    meta = field.metadata
    if meta.get("choices"):
        return ", ".join(str(c) for c in meta["choices"])
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f"[{lo}, {hi}]"
    if lo is not None:
        return f">= {lo}"
    if hi is not None:
        return f"<= {hi}"
    return ""


def _reference_row(key: str, tp: Any, field: dataclasses.Field, note: str = "") -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    type_name = f"{args[0].__name__} or null" if len(args) == 1 else getattr(tp, "__name__", tp)
    default = field.default if field.default is not dataclasses.MISSING else ""
    default = "null" if default is None else default
    meaning = field.metadata.get("help", "")
    if note:
        meaning = f"{note}: {meaning}"
    return f"| `{key}` | {type_name} | `{default}` | {_bounds(field)} | {meaning} |"


def reference(registry: Registry) -> str:
    """A markdown table of every option: the core's, then each installed component's."""
    rows = ["| key | type | default | valid | meaning |", "| --- | --- | --- | --- | --- |"]
    rows.append(
        "| `output_dir` | str | `runs/<run name>` | | run directory: config, checkpoint, weights |"
    )
    for group, dc in core_groups().items():
        rows.extend(_reference_row(f"{group}.{n}", tp, f) for n, tp, f in typed_fields(dc))
        kind = SELECTOR_GROUPS.get(group)
        if kind is None:
            continue
        by_options: dict[type, list[Component]] = {}
        for component in registry.components[kind].values():
            if component.options is not None:
                by_options.setdefault(component.options, []).append(component)
        for options, components in by_options.items():
            names = ", ".join(c.name for c in components)
            prefix = group if kind != "method" else components[0].name
            rows.extend(
                _reference_row(f"{prefix}.{n}", tp, f, note=f"{group}={names}")
                for n, tp, f in typed_fields(options)
            )
    return "\n".join(rows) + "\n"
