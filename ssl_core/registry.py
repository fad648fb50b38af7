"""Named components that plugins offer, and the lookup that turns a config name into one.

Plugins hand components to the registry through the ``ssl_register_*`` hooks. A component is a
*factory*: called once per run with the component's typed options (and, if it asks, the
resolved config and the name it was selected by), it returns a plugin object whose hookimpls
(``ssl_build_backbone``, ``ssl_make_views``, ...) the engine registers for the run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ssl_core.errors import ConfigError, UserError, closest

#: Component kinds, each with the config group that selects it.
KINDS: dict[str, str] = {
    "method": "method",
    "backbone": "backbone",
    "view_generator": "augment",
    "dataset": "data",
}


@dataclass(frozen=True)
class Component:
    """One named component offered by a plugin.

    ``matches``/``catalog`` make a *family*: a component that answers for every name
    ``matches(name)`` accepts (e.g. any timm model), with ``catalog()`` listing the names for
    suggestions. ``auto_for`` lists the device types ("cpu", "cuda", ...) on which the
    component is chosen by the name ``auto``.

    ``defaults`` (methods only) is the method's recipe for other components' options,
    ``{"optim.name": "sgd", "augment.name": "multicrop"}``: the config applies each to a run of
    the method unless the user set that key; a key the selected components do not have is
    reported, not applied.

    ``views`` is, for a method, the views per image its loss takes: ``(low, high)``, ``high``
    ``None`` for no upper bound (``register(views=2)`` gives ``(2, 2)``); for a view generator,
    the views it makes: an int, or a function of its options. ``None``: not declared (checked
    at the first step instead of before the run). ``default`` makes the component the one of a
    run that names none of its kind; for a family it is the name to use (``"resnet18"``).
    """

    kind: str
    name: str
    factory: Callable[[Any], object]
    provider: str
    options: type | None = None
    description: str = ""
    matches: Callable[[str], bool] | None = None
    catalog: Callable[[], Iterable[str]] | None = None
    auto_for: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, hash=False
    )
    views: Any = None
    default: bool | str = False

    @property
    def is_family(self) -> bool:
        return self.matches is not None

    @property
    def group(self) -> str:
        """The config group holding the component's options (a method's own name)."""
        return self.name if self.kind == "method" else KINDS[self.kind]

    def views_made(self, options: Any) -> int | None:
        """A view generator's number of views with ``options``; ``None`` when not declared."""
        return self.views(options) if callable(self.views) else self.views

    def make(self, config: Any, options: Any = None) -> object:
        """The component's run plugin for one run: ``factory`` called with what it asks for.

        :param config: the resolved run config.
        :param options: the component's options (:func:`ssl_core.config.component_options`).
        """
        name = str(config[self.group].name) if self.kind != "method" else self.name
        available = {"options": options, "config": config, "name": name}
        parameters = inspect.signature(self.factory).parameters
        if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return self.factory(**available)
        unknown = [n for n in parameters if n not in available]
        if unknown:
            raise TypeError(
                f"the factory of {self.kind} '{self.name}' (plugin '{self.provider}') takes "
                f"'{unknown[0]}'; a factory may take options, config and name"
            )
        return self.factory(**{n: v for n, v in available.items() if n in parameters})


class DuplicateComponentError(UserError):
    """Two plugins registered the same name for the same kind."""


class UnknownComponentError(ConfigError):
    """A config names a component that no plugin registered."""


def _checked_views(kind: str, name: str, views: Any) -> Any:
    """``views`` in the registry's form; a mistake in it is a bug of the plugin."""
    if views is None:
        return None
    if kind == "method":
        low, high = (views, views) if isinstance(views, int) else tuple(views)
        if not (isinstance(low, int) and low >= 1 and (high is None or high >= low)):
            raise ValueError(
                f"method '{name}' declares views={views!r}; give an int or (low, high), high "
                "None for no upper bound"
            )
        return (low, high)
    if kind == "view_generator":
        if callable(views) or (isinstance(views, int) and views >= 1):
            return views
        raise ValueError(
            f"view generator '{name}' declares views={views!r}; give an int or a function of "
            "its options"
        )
    raise ValueError(f"{kind} '{name}' declares views; only methods and view generators do")


def _checked_name_and_options(kind: str, name: Any, options: Any) -> None:
    """A name the config can select and options that fit beside the core's; else a bug of the
    plugin, reported when it registers rather than when a run selects it."""
    import dataclasses

    from ssl_core.config.groups import ROOT_KEYS, core_groups

    label = kind.replace("_", " ")
    if not isinstance(name, str) or not name or any(c in name for c in "=, \t\n"):
        raise ValueError(
            f"{label} name {name!r} cannot be selected with {KINDS[kind]}=NAME; give a "
            "non-empty name without '=', ',' or spaces"
        )
    groups = core_groups()
    if kind == "method" and (name in groups or name in ROOT_KEYS or "." in name):
        raise ValueError(
            f"method '{name}' would name its option group '{name}', which collides with the "
            f"core config ({', '.join(sorted([*groups, *ROOT_KEYS]))}) or holds a '.'; "
            "choose another name"
        )
    if options is None:
        return
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        raise ValueError(
            f"{label} '{name}' gives options={options!r}; give a dataclass of "
            "ssl_core.option fields"
        )
    if kind == "method":
        return
    group = KINDS[kind]
    core = {f.name for f in dataclasses.fields(groups[group])}
    clash = sorted(core & {f.name for f in dataclasses.fields(options)})
    if clash:
        raise ValueError(
            f"{label} '{name}' declares option {group}.{clash[0]}, which the core's "
            f"'{group}' group already has ({', '.join(sorted(core))}); rename the option"
        )


def _checked_defaults(
    kind: str, name: str, defaults: Mapping[str, Any] | None
) -> Mapping[str, Any]:
    """``defaults`` as a read-only mapping; a mistake in them is a bug of the plugin."""
    if not defaults:
        return MappingProxyType({})
    if kind != "method":
        raise ValueError(f"{kind} '{name}' gives defaults; only a method may (its recipe)")
    for key in defaults:
        group, dot, leaf = str(key).partition(".")
        if not (dot and group and leaf) or group == "method":
            raise ValueError(
                f"method '{name}' gives a default for '{key}'; keys are 'group.key' of another "
                "group than 'method' (e.g. 'optim.lr', 'augment.name')"
            )
    return MappingProxyType(dict(defaults))


@dataclass
class Registry:
    """All components offered by the loaded plugins, by kind and name."""

    components: dict[str, dict[str, Component]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )

    def add(self, component: Component) -> None:
        by_name = self.components[component.kind]
        taken = by_name.get(component.name)
        if taken is not None:
            raise DuplicateComponentError(
                f"{component.kind} '{component.name}' is registered twice: by plugin "
                f"'{taken.provider}' and by plugin '{component.provider}'; uninstall or block one"
            )
        by_name[component.name] = component

    def registrar(self, kind: str, provider: str) -> Callable[..., None]:
        """The ``register`` callable handed to an ``ssl_register_*`` hook of one plugin."""

        def register(
            name: str,
            factory: Callable[[Any], object],
            *,
            options: type | None = None,
            description: str = "",
            matches: Callable[[str], bool] | None = None,
            catalog: Callable[[], Iterable[str]] | None = None,
            auto_for: Iterable[str] = (),
            defaults: Mapping[str, Any] | None = None,
            views: Any = None,
            default: bool | str = False,
        ) -> None:
            _checked_name_and_options(kind, name, options)
            self.add(
                Component(
                    kind=kind,
                    name=name,
                    factory=factory,
                    provider=provider,
                    options=options,
                    description=description,
                    matches=matches,
                    catalog=catalog,
                    auto_for=tuple(auto_for),
                    defaults=_checked_defaults(kind, name, defaults),
                    views=_checked_views(kind, name, views),
                    default=default,
                )
            )

        return register

    def __iter__(self) -> Iterator[Component]:
        for by_name in self.components.values():
            yield from by_name.values()

    def names(self, kind: str) -> list[str]:
        """Registered names of one kind (families by their label), sorted."""
        return sorted(self.components[kind])

    def auto(self, kind: str, device_type: str) -> Component:
        """The component of ``kind`` chosen by the name ``auto`` on ``device_type``."""
        for component in self.components[kind].values():
            if device_type in component.auto_for:
                return component
        valid = ", ".join(self.names(kind)) or "none installed"
        raise UnknownComponentError(
            f"no {kind} is marked for 'auto' on device '{device_type}'; name one of: {valid}"
        )

    def default(self, kind: str) -> tuple[Component, str]:
        """The component of ``kind`` marked ``default`` (the first one), with the name to use.

        :raises UnknownComponentError: when no installed component of ``kind`` is marked.
        """
        for component in self.components[kind].values():
            if component.default:
                name = component.default if isinstance(component.default, str) else component.name
                return component, name
        group = KINDS[kind]
        valid = ", ".join(self.names(kind)) or "none installed"
        raise UnknownComponentError(
            f"no {kind.replace('_', ' ')} given and none is installed as the default; "
            f"choose one with {group}=NAME (valid: {valid})"
        )

    def get(self, kind: str, name: str) -> Component:
        """The component called ``name``; unknown names list the valid ones and the closest."""
        by_name = self.components[kind]
        if name in by_name and not by_name[name].is_family:
            return by_name[name]
        for component in by_name.values():
            if component.is_family and component.matches(name):
                return component
        group = KINDS[kind]
        label = kind.replace("_", " ")
        exact = [n for n, c in by_name.items() if not c.is_family]
        families = [c for c in by_name.values() if c.is_family]
        pool = list(exact)
        for family in families:
            pool.extend(family.catalog() if family.catalog else [])
        hint = closest(name, pool)
        parts = [f"unknown {label} '{name}' ({group}={name})"]
        if hint:
            parts.append("did you mean: " + ", ".join(hint))
        listed = exact + [f"any {f.name} name ({f.description})" for f in families]
        parts.append("valid: " + (", ".join(listed) if listed else "none installed"))
        raise UnknownComponentError("; ".join(parts))
