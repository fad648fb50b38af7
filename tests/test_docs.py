"""The README stays true: its configuration reference and hook table match the code."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from ssl_core import hookspecs
from ssl_core.config.reference import reference
from ssl_core.plugins import get_plugins

README = Path(__file__).resolve().parents[1] / "README.md"


def builtin_reference() -> str:
    third_party = {
        ep.name
        for ep in metadata.entry_points(group="ssl_core")
        if ep.dist is None or ep.dist.name != "ssl-core"
    }
    return reference(get_plugins(blocked=third_party).registry)


def test_readme_configuration_reference_is_generated_one():
    text = README.read_text()
    start = text.index("<!-- reference:start -->\n") + len("<!-- reference:start -->\n")
    end = text.index("<!-- reference:end -->")
    assert text[start:end] == builtin_reference(), (
        "README's configuration reference is stale: regenerate it with `make docs`"
    )


def test_every_hook_is_in_the_readme():
    text = README.read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("ssl_")]
    assert len(hooks) >= 15
    for name in hooks:
        short = name.removeprefix("ssl_register_")
        assert name in text or f"_{short}" in text, f"{name} is not documented in README.md"


def write_reference() -> None:
    """Rewrite README's configuration reference from the installed built-in plugins."""
    text = README.read_text()
    start = text.index("<!-- reference:start -->\n") + len("<!-- reference:start -->\n")
    end = text.index("<!-- reference:end -->")
    README.write_text(text[:start] + builtin_reference() + text[end:])


if __name__ == "__main__":
    write_reference()
