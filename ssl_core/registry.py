"""Named components that plugins offer, and the lookup that turns a config name into one.

Plugins hand components to the registry through the ``ssl_register_*`` hooks. A component is a
*factory*: called once per run with the resolved config, it returns a plugin object whose
hookimpls (``ssl_build_backbone``, ``ssl_make_views``, ...) the engine registers for the run.
"""

from __future__ import annotations

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
    the method unless the user set that key, or the selected components have no such key.
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

    @property
    def is_family(self) -> bool:
        return self.matches is not None


class DuplicateComponentError(UserError):
    """Two plugins registered the same name for the same kind."""


class UnknownComponentError(ConfigError):
    """A config names a component that no plugin registered."""


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
        ) -> None:
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
