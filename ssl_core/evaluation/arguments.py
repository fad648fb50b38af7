"""``key=value`` arguments of ``ssl eval``, ``ssl export`` and ``ssl embed`` that are not
config keys (``run=``, ``out=``)."""

from __future__ import annotations

from collections.abc import Sequence

#: The argument naming the pretrained encoder: an MLflow run id or a path.
SOURCE_KEY = "run"


def pop_keys(args: Sequence[str], keys: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Split ``key=value`` arguments into the named non-config ``keys`` and the rest."""
    found: dict[str, str] = {}
    rest: list[str] = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key.strip() in keys:
            found[key.strip()] = value
        else:
            rest.append(arg)
    return found, rest


def raw_override(args: Sequence[str], key: str, default: str | None) -> str | None:
    """The last value given for ``key`` among ``key=value`` arguments, else ``default``."""
    value = default
    for arg in args:
        k, sep, v = arg.partition("=")
        if sep and k.strip() == key:
            value = v
    return value
