"""Every hook is documented in docs/plugins.md, with its parameters, and exercised by a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ssl_core import hookspecs

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
TESTS = ROOT / "tests"


def hook_names() -> list[str]:
    return sorted(
        name
        for name, value in vars(hookspecs).items()
        if name.startswith("ssl_") and callable(value) and hasattr(value, "ssl_core_spec")
    )


def documented_signatures() -> dict[str, list[str]]:
    """``{hook: [parameter, ...]}`` from the guide's headings ``#### `ssl_x(a, b)` ``."""
    found = {}
    for line in GUIDE.read_text().splitlines():
        match = re.match(r"#+ `(ssl_\w+)\(([^)]*)\)`", line)
        if match:
            found[match[1]] = [p.strip() for p in match[2].split(",") if p.strip()]
    return found


def test_hookspecs_are_found():
    assert len(hook_names()) >= 17
    assert "ssl_compute_loss" in hook_names()


@pytest.mark.parametrize("hook", hook_names())
def test_hook_has_a_section_in_the_guide_with_its_parameters(hook):
    signatures = documented_signatures()
    assert hook in signatures, f"docs/plugins.md has no '#### `{hook}(...)`' section"
    expected = list(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert signatures[hook] == expected, f"docs/plugins.md gives {hook} the wrong parameters"


def test_guide_documents_no_hook_that_does_not_exist():
    assert set(documented_signatures()) <= set(hook_names())


@pytest.mark.parametrize("hook", hook_names())
def test_hook_is_exercised_by_a_test(hook):
    pattern = re.compile(rf"\b{hook}\b")
    users = [
        path.relative_to(ROOT)
        for path in TESTS.rglob("*.py")
        if path.name != Path(__file__).name and pattern.search(path.read_text())
    ]
    assert users, f"no test calls or implements {hook}"


def test_plugin_controls_are_documented():
    text = GUIDE.read_text()
    for control in ("SSL_CORE_DISABLE_PLUGIN_AUTOLOAD", "SSL_CORE_BLOCK_PLUGINS", "ssl plugins"):
        assert control in text
