"""The plugin contract as a library: ``ssl plugins check`` runs it, and so can a plugin's tests.

Every check of ``docs/plugins.md`` ("Testing a plugin") is a function in
:mod:`ssl_core.testing.contract`, run on tiny inputs against a registered component. In a
plugin's own test suite one line checks everything the plugin registers::

    from ssl_core.testing import assert_contract

    def test_the_ssl_core_contract():
        assert_contract("my-plugin")        # the entry point's name; or component names

Nothing here needs ssl_core's source tree: it works from an installed ssl_core.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ssl_core.errors import UserError

if TYPE_CHECKING:
    from ssl_core.plugins import Plugins
    from ssl_core.testing.tiny import Target

#: The plugin name of the checks' own tiny backbone, never checked itself.
OWN = "ssl-contract"

__all__ = ["Result", "assert_contract", "cases", "run_check", "run_checks", "targets"]


@dataclass(frozen=True)
class Result:
    """One check of one component: passed, or failed with the reason."""

    component: str
    plugin: str
    check: str
    passed: bool
    reason: str = ""

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else f"FAIL: {self.reason}"
        return f"{self.component} ({self.plugin}) {self.check}: {verdict}"


def _family_name(component, prefer: Iterable[str]) -> str | None:
    for name in prefer:
        if component.matches(name):
            return name
    if isinstance(component.default, str):
        return component.default
    catalog = list(component.catalog()) if component.catalog else []
    return catalog[0] if catalog else None


def targets(
    plugins: Plugins, names: Sequence[str] = (), prefer: Iterable[str] = ()
) -> list[Target]:
    """The components ``names`` select: plugin names (all they register), component names,
    ``kind:name``, or a name a family answers for; every component when ``names`` is empty.

    A family (a component answering for many names) is checked under the first of ``prefer``
    it matches, else its default name, else the first name of its catalog.

    :raises UserError: for a name that is none of these.
    """
    from ssl_core.testing.tiny import Target

    prefer = tuple(prefer)
    everything = [c for c in plugins.registry if c.provider != OWN]

    def target(component, name: str | None = None) -> Target:
        if name is None:
            name = _family_name(component, prefer) if component.is_family else component.name
        return Target(component, name or component.name)

    if not names:
        return [target(c) for c in everything]
    chosen: list[Target] = []
    for name in names:
        kind, _, short = name.rpartition(":")
        found = [target(c) for c in everything if c.provider == name and not kind]
        found += [target(c) for c in everything if c.name == short and kind in ("", c.kind)]
        if not found:
            found = [
                target(c, short)
                for c in everything
                if c.is_family and kind in ("", c.kind) and c.matches(short)
            ]
        if not found:
            plugin_names = sorted({c.provider for c in everything})
            labels = sorted(f"{c.kind}:{c.name}" for c in everything)
            raise UserError(
                f"unknown plugin or component '{name}'; plugins: {', '.join(plugin_names)}; "
                f"components: {', '.join(labels)}"
            )
        for found_target in found:
            if found_target not in chosen:
                chosen.append(found_target)
    return chosen


def run_check(plugins: Plugins, target: Target, check: str) -> Result:
    """Run the check named ``check`` on ``target``; never raises for a broken component."""
    import torch

    from ssl_core.testing.contract import CHECKS
    from ssl_core.testing.tiny import first_line

    function = dict(CHECKS[target.component.kind])[check]
    provider = target.component.provider
    try:
        with torch.random.fork_rng(devices=[]):
            function(plugins, target)
    except AssertionError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "assertion failed"
        return Result(target.label, provider, check, False, reason)
    except Exception as exc:
        return Result(target.label, provider, check, False, first_line(exc))
    return Result(target.label, provider, check, True)


def cases(
    plugins: Plugins, names: Sequence[str] = (), prefer: Iterable[str] = ()
) -> list[tuple[Target, str]]:
    """Every ``(target, check)`` of the selected components, in order (for parametrizing)."""
    from ssl_core.testing.contract import CHECKS

    return [
        (target, check)
        for target in targets(plugins, names, prefer)
        for check, _ in CHECKS[target.component.kind]
    ]


def run_checks(
    names: Sequence[str] = (), plugins: Plugins | None = None, prefer: Iterable[str] = ()
) -> list[Result]:
    """Every check of the components ``names`` select (see :func:`targets`)."""
    if plugins is None:
        from ssl_core.plugins import get_plugins

        plugins = get_plugins()
    return [run_check(plugins, target, check) for target, check in cases(plugins, names, prefer)]


def assert_contract(*names: str, plugins: Plugins | None = None) -> list[Result]:
    """Run :func:`run_checks` and raise ``AssertionError`` listing every failed check.

    ``names`` as in :func:`targets`: usually the plugin's entry-point name.
    """
    results = run_checks(names, plugins)
    failed = [r for r in results if not r.passed]
    if failed:
        lines = "\n".join(f"  {r.component}: {r.check}: {r.reason}" for r in failed)
        raise AssertionError(f"{len(failed)} of {len(results)} contract checks failed:\n{lines}")
    return results
