"""The run config: the core's option groups, resolution of ``key=value`` overrides against the
installed components, and the option reference."""

from __future__ import annotations

from ssl_core.config.groups import PRECISIONS, SELECTOR_GROUPS, core_groups
from ssl_core.config.resolve import (
    Selection,
    build_config,
    check_views,
    component_options,
    flatten,
    parse_overrides,
    resolve_device,
    to_yaml,
)

__all__ = [
    "PRECISIONS",
    "SELECTOR_GROUPS",
    "Selection",
    "build_config",
    "check_views",
    "component_options",
    "core_groups",
    "flatten",
    "parse_overrides",
    "resolve_device",
    "to_yaml",
]
