"""Every call into a plugin, guarded: a plugin that fails is named in one line, not a traceback.

:attr:`ssl_core.plugins.Plugins.hook` hands out these callers instead of pluggy's own, so the
engine, evaluations and exports call hooks exactly as before. What changes is failure:

- An exception from a hookimpl (``SystemExit`` included: a plugin never ends the command) is
  a :class:`~ssl_core.errors.PluginError` naming the plugin, the hook and the error, in one
  line (exit 1; ``ssl --debug`` shows the traceback). A :class:`~ssl_core.errors.UserError`
  the plugin raised on purpose (one line about the config or the data) goes through as it is,
  and so do ``KeyboardInterrupt`` and a stop on a signal. Running out of memory is said as
  such, with what to lower, whichever hook met it.
- Lifecycle hooks (``ssl_validate_config``, ``ssl_run_start``, ...) are called plugin by
  plugin, in pluggy's order, so the one that failed is known; the first failure ends the
  call. ``ssl_run_end`` is the exception: every plugin hears the end of the run, so a tracker
  marks it whatever the others do, and a plugin failing there is a warning (the run's files
  are written by then).
- Step hooks (one answer) go through pluggy unchanged, wrappers included; a failure names the
  plugin whose code raised it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ssl_core.errors import PluginError, RunFailed, RunInterrupted, UserError

if TYPE_CHECKING:
    from ssl_core.plugins import Plugins

#: Exceptions that are not a plugin's failure: they go through unchanged.
PASS_THROUGH = (UserError, RunInterrupted, KeyboardInterrupt, GeneratorExit)

#: Lifecycle hooks whose every implementation is called even when one fails.
EVERY_PLUGIN_HEARS = ("ssl_run_end",)


def error_text(exc: BaseException) -> str:
    """``Type: first line of the message`` (``SystemExit: 0`` for ``sys.exit(0)``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines)
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}".rstrip(": ")


def _code_of(function: Any) -> Any:
    function = getattr(function, "__func__", function)
    return getattr(function, "__code__", None)


def _culprit(exc: BaseException, impls: list[Any]) -> Any:
    """The hookimpl whose code raised ``exc`` (the outermost one in its traceback), or None."""
    if len(impls) == 1:
        return impls[0]
    codes = {_code_of(impl.function): impl for impl in impls}
    tb = exc.__traceback__
    while tb is not None:
        impl = codes.get(tb.tb_frame.f_code)
        if impl is not None:
            return impl
        tb = tb.tb_next
    return None


def describe_plugin(plugins: Plugins, plugin_name: str) -> str:
    """``plugin 'x'``, or for a run plugin ``method 'byol' of plugin 'byol'``."""
    if plugin_name.startswith("run:"):
        _, kind, name = plugin_name.split(":", 2)
        component = plugins.registry.components.get(kind, {}).get(name)
        provider = component.provider if component is not None else "?"
        return f"{kind.replace('_', ' ')} '{name}' of plugin '{provider}'"
    return f"plugin '{plugin_name}'"


def failure(plugins: Plugins, hook: str, exc: BaseException, impls: list[Any]) -> UserError:
    """The one-line error for ``exc`` raised while calling ``hook``."""
    impl = _culprit(exc, impls)
    who = describe_plugin(plugins, impl.plugin_name) if impl is not None else "a plugin"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return RunFailed(
            f"out of memory in {hook} ({who}): {error_text(exc)}; lower trainer.batch_size "
            "or data.image_size"
        )
    return PluginError(f"{who} failed in {hook}: {error_text(exc)}")


class GuardedHook:
    """One hook of the plugin manager, called with every plugin failure turned into one line.

    Other attributes (``get_hookimpls``, ``spec``, ``name``) are pluggy's ``HookCaller``'s.
    """

    def __init__(self, plugins: Plugins, caller: Any) -> None:
        self._plugins, self._caller = plugins, caller

    def __getattr__(self, name: str) -> Any:
        return getattr(self._caller, name)

    def __call__(self, **kwargs: Any) -> Any:
        caller = self._caller
        impls = caller.get_hookimpls()
        spec = caller.spec
        firstresult = bool(spec is not None and spec.opts.get("firstresult"))
        if firstresult or any(impl.wrapper or impl.hookwrapper for impl in impls):
            try:
                return caller(**kwargs)
            except PASS_THROUGH:
                raise
            except BaseException as exc:
                raise failure(self._plugins, caller.name, exc, impls) from exc
        return self._one_by_one(impls, kwargs)

    def _one_by_one(self, impls: list[Any], kwargs: dict[str, Any]) -> list[Any]:
        name = self._caller.name
        keep_going = name in EVERY_PLUGIN_HEARS
        results: list[Any] = []
        interrupted: BaseException | None = None
        for impl in reversed(impls):  # pluggy's order: tryfirst first, trylast last
            try:
                named = {k: kwargs[k] for k in impl.kwargnames if k in kwargs}
                result = impl.function(*[kwargs[arg] for arg in impl.argnames], **named)
            except (KeyboardInterrupt, RunInterrupted) as exc:
                if not keep_going:
                    raise
                interrupted = interrupted or exc  # the others still hear the end first
                continue
            except BaseException as exc:
                if isinstance(exc, PASS_THROUGH) and not keep_going:
                    raise
                error = (
                    exc if isinstance(exc, UserError) else failure(self._plugins, name, exc, [impl])
                )
                if not keep_going:
                    raise error from exc
                print(f"warning: {error}", file=sys.stderr)
                continue
            if result is not None:
                results.append(result)
        if interrupted is not None:
            raise interrupted
        return results


class GuardedHooks:
    """``plugins.hook`` with every call guarded (see the module's docstring)."""

    def __init__(self, plugins: Plugins) -> None:
        self._plugins = plugins

    def __getattr__(self, name: str) -> GuardedHook:
        return GuardedHook(self._plugins, getattr(self._plugins.pm.hook, name))
