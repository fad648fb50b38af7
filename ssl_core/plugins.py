"""Build the plugin manager: hook specs, then the entry-point plugins, each load guarded.

Every plugin, the built-in ones included (datasets, the MLflow tracker, the monitors, the
progress display), is found through the ``ssl_core`` entry-point group. An entry point names a
module, or a class that is instantiated once per plugin manager (for plugins that keep state
during a run). A plugin that fails to import (``sys.exit()`` and ``KeyboardInterrupt``
included), whose hookimpls do not match the specs, or whose registration hook raises or
offers a component whose name or options collide with the core's config, is recorded as a
:class:`PluginFailure` and left out; the others keep working. Hooks are called through
:mod:`ssl_core.guard`.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from ssl_core import hookspecs
from ssl_core.registry import KINDS, Registry

ENTRY_POINT_GROUP = "ssl_core"

#: Hooks through which plugins register components, by component kind.
REGISTRATION_HOOKS = {
    "method": "ssl_register_methods",
    "backbone": "ssl_register_backbones",
    "view_generator": "ssl_register_view_generators",
    "dataset": "ssl_register_datasets",
}
assert set(REGISTRATION_HOOKS) == set(KINDS)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin left out, with where it came from and why."""

    name: str
    distribution: str
    entry_point: str
    error: str

    def __str__(self) -> str:
        return (
            f"plugin '{self.name}' ({self.distribution}, entry point {self.entry_point}) "
            f"failed: {self.error}"
        )


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin as ``ssl plugins`` shows it."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    components: tuple[str, ...]


@dataclass
class Plugins:
    """The plugin manager with what it loaded: components, infos, and failures."""

    pm: pluggy.PluginManager
    registry: Registry
    failures: list[PluginFailure] = field(default_factory=list)
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)

    @functools.cached_property
    def hook(self) -> Any:
        """The hooks, each call guarded: a failing plugin is one line naming it (see
        :mod:`ssl_core.guard`); ``pm.hook`` is pluggy's own. Made once: it looks each hook up
        in ``pm.hook`` when called, so plugins registered later are heard too."""
        from ssl_core.guard import GuardedHooks

        return GuardedHooks(self)

    def infos(self) -> list[PluginInfo]:
        result = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            dist, version = self.sources.get(name, ("ssl-core", _version("ssl-core")))
            hooks = tuple(sorted(c.name for c in self.pm.get_hookcallers(plugin) or []))
            components = tuple(f"{c.kind}:{c.name}" for c in self.registry if c.provider == name)
            result.append(PluginInfo(name, dist, version, hooks, components))
        return result

    @contextmanager
    def running(self, config: Any, components: Sequence[Any]) -> Iterator[None]:
        """Register the run plugins of ``components`` (built from ``config``) for the body.

        Each factory gets the component's options with the run's values. Their step hooks
        answer for the duration; they are unregistered on the way out.
        """
        from ssl_core.config import component_options

        names = []
        try:
            for component in components:
                name = f"run:{component.kind}:{component.name}"
                plugin = component.make(config, component_options(component, config))
                self.pm.register(plugin, name=name)
                names.append(name)
            yield
        finally:
            for name in names:
                self.pm.unregister(name=name)

    def versions(self) -> dict[str, str]:
        """``{distribution: version}`` of every loaded plugin's distribution."""
        return {info.distribution: info.version for info in self.infos()}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _error_text(exc: BaseException) -> str:
    from ssl_core.guard import error_text

    return error_text(exc)


def _register_guarded(plugins: Plugins, plugin: object, name: str, dist: str, value: str) -> bool:
    pm = plugins.pm
    try:
        pm.register(plugin, name=name)
    except BaseException as exc:  # a broken plugin is reported, not fatal
        plugins.failures.append(PluginFailure(name, dist, value, _error_text(exc)))
        return False
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(name=name)
        plugins.failures.append(PluginFailure(name, dist, value, _error_text(exc)))
        return False
    return True


def load_entry_points(plugins: Plugins, blocked: set[str]) -> None:
    """Load every ``ssl_core`` entry point not blocked; record the ones that fail."""
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else "unknown"
        if ep.name in blocked or plugins.pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
            if isinstance(plugin, type):
                plugin = plugin()  # a stateful plugin: one instance per plugin manager
        except BaseException as exc:  # sys.exit() and KeyboardInterrupt too: reported, not fatal
            plugins.failures.append(PluginFailure(ep.name, dist, ep.value, _error_text(exc)))
            continue
        if _register_guarded(plugins, plugin, ep.name, dist, ep.value):
            plugins.sources[ep.name] = (dist, version)


def collect_components(plugins: Plugins) -> None:
    """Call every registration hook, plugin by plugin, so one that raises is left out alone."""
    for kind, hook_name in REGISTRATION_HOOKS.items():
        caller = getattr(plugins.pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            register = plugins.registry.registrar(kind, impl.plugin_name)
            try:
                impl.function(register=register)
            except BaseException as exc:
                dist, _ = plugins.sources.get(impl.plugin_name, ("ssl-core", ""))
                origin = getattr(impl.plugin, "__name__", type(impl.plugin).__module__)
                plugins.failures.append(
                    PluginFailure(
                        impl.plugin_name, dist, origin, f"{hook_name}: {_error_text(exc)}"
                    )
                )


def get_plugins(
    *,
    entry_points: bool | None = None,
    blocked: set[str] | None = None,
    extra: list[tuple[str, object]] | None = None,
) -> Plugins:
    """A fresh plugin manager with specs, entry-point plugins and extras registered.

    :param entry_points: load plugins from the ``ssl_core`` entry-point group; defaults to
        true unless ``SSL_CORE_DISABLE_PLUGIN_AUTOLOAD`` is set.
    :param blocked: plugin names not to load, added to ``SSL_CORE_BLOCK_PLUGINS``
        (comma-separated).
    :param extra: ``(name, plugin)`` pairs registered after the entry points (used by tests).
    """
    if entry_points is None:
        entry_points = not os.environ.get("SSL_CORE_DISABLE_PLUGIN_AUTOLOAD")
    blocked = set(blocked or ())
    blocked |= {n.strip() for n in os.environ.get("SSL_CORE_BLOCK_PLUGINS", "").split(",") if n}
    pm = pluggy.PluginManager("ssl_core")
    pm.add_hookspecs(hookspecs)
    plugins = Plugins(pm=pm, registry=Registry())
    if entry_points:
        load_entry_points(plugins, blocked)
    from ssl_core.methods import defaults

    _register_guarded(plugins, defaults, "core-defaults", "ssl-core", defaults.__name__)
    for name, plugin in list(extra or []):
        if name not in blocked:
            origin = getattr(plugin, "__name__", type(plugin).__module__)
            _register_guarded(plugins, plugin, name, "ssl-core", origin)
    collect_components(plugins)
    return plugins


def warn_failures(plugins: Plugins) -> None:
    """Tell the user, on stderr, about every plugin that was left out."""
    for failure in plugins.failures:
        print(f"warning: {failure}", file=sys.stderr)
