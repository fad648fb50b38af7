"""The core's answers to the optional step hooks, for a method that gives none.

Registered in every plugin manager after the plugins (``trylast``): a method's own
``ssl_update_target`` or ``ssl_param_groups`` answers first, and other plugins can still wrap
these hooks with ``wrapper=True`` and see the core's answer.
"""

from __future__ import annotations

from typing import Any

from ssl_core import hookimpl


@hookimpl(trylast=True)
def ssl_update_target(model: Any, info: Any) -> dict[str, Any]:
    """Move the targets the model declares with :class:`ssl_core.EMA` (``{}`` without one)."""
    from ssl_core.methods.targets import update_declared_targets

    return update_declared_targets(model, info)


@hookimpl(trylast=True)
def ssl_param_groups(model: Any) -> list[Any]:
    """The core's groups: biases and normalization parameters apart (:func:`param_groups`)."""
    from ssl_core.methods.param_groups import param_groups

    return param_groups(model)
