"""Typed, range-checked options that plugins declare for their config group.

A plugin describes its options as a dataclass whose fields use :func:`option`; the config layer
turns it into an OmegaConf structured node (types are enforced on assignment) and checks the
``min``/``max``/``choices`` kept in each field's metadata.

Example::

    @dataclass
    class BYOLOptions:
        tau_base: float = option(0.996, "EMA decay at step 0", min=0.0, max=1.0)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def option(
    default: Any,
    help: str = "",
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """A dataclass field with a default, a one-line help text and optional validity bounds."""
    metadata = {"help": help, "min": min, "max": max, "choices": choices}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_fields(options: type | None) -> list[dataclasses.Field]:
    """The fields of an options dataclass (empty for ``None``)."""
    return list(dataclasses.fields(options)) if options is not None else []


def check_value(key: str, value: Any, field: dataclasses.Field) -> str | None:
    """A one-line complaint when ``value`` breaks the field's bounds, else ``None``."""
    meta = field.metadata
    if value is None:
        return None
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        valid = ", ".join(str(c) for c in choices)
        return f"invalid value {key}={value!r}; valid: {valid}"
    lo, hi = meta.get("min"), meta.get("max")
    if isinstance(value, float) and not math.isfinite(value) and (lo is not None or hi is not None):
        return f"{key}={value} is not a number in range; give a finite value"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if lo is not None and hi is not None:
                valid = f"must be in [{lo}, {hi}]"
            else:
                valid = f"must be >= {lo}" if lo is not None else f"must be <= {hi}"
            return f"{key}={value} is out of range; {valid}"
    return None
