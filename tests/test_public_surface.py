"""Plugins use ssl_core's declared public surface only, and nothing in it is dead.

The built-in plugins and the example package are written as a third party writes a plugin:
they import names from ``ssl_core`` itself (``ssl_core.__all__``), never from its submodules,
which are free to change. Their tests may reach further (the plugin manager, the CLI).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import ssl_core

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_CODE = sorted(
    path
    for folder in (ROOT / "plugins", ROOT / "examples")
    for path in folder.rglob("*.py")
    if "tests" not in path.parts
)


def imports_of(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import of ssl_core in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ssl_core"):
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name, []) for a in node.names if a.name.startswith("ssl_core")
            ]
    return found


def test_there_is_plugin_code_to_check():
    assert len(PLUGIN_CODE) > 20


@pytest.mark.parametrize("path", PLUGIN_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugin_code_imports_only_the_public_surface(path):
    for line, module, names in imports_of(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        assert module == "ssl_core", f"{where} imports {module}, a submodule of ssl_core"
        private = [name for name in names if name not in ssl_core.__all__]
        assert not private, f"{where} imports {private} that ssl_core does not declare public"


def test_no_plugin_unwraps_a_data_parallel_model():
    # Step hooks get the model itself; a plugin reaching for `.module` works around the core.
    for path in PLUGIN_CODE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "module":
                raise AssertionError(f"{path.relative_to(ROOT)}:{node.lineno} uses .module")
            if isinstance(node, ast.Constant) and node.value == "module":
                raise AssertionError(f"{path.relative_to(ROOT)}:{node.lineno} names 'module'")


@pytest.mark.parametrize("name", ssl_core.__all__)
def test_every_public_name_resolves(name):
    assert getattr(ssl_core, name) is not None


def test_importing_ssl_core_imports_no_torch():
    code = "import sys, ssl_core; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
