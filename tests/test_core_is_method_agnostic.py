"""The core knows no method, backbone or view generator by name: their names appear in
``ssl_core/`` only as documentation, and ``ssl_core/`` never imports timm.

Documentation is comments, docstrings and prose strings (help texts, examples: strings with
whitespace). Everything else (identifiers, imports, attribute names, and strings without
whitespace, which are keys, names and comparisons such as ``method == "byol"``) must not name
a method, so no method can be special-cased by the engine.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ssl_core.plugins import get_plugins

CORE = Path(__file__).resolve().parents[1] / "ssl_core"
#: Well-known method names, checked even when no installed plugin registers them.
KNOWN_METHODS = ("byol", "simsiam", "moco", "simclr", "dino", "barlow", "swav", "vicreg")


#: Well-known backbone families and view generators, checked even when none is installed.
KNOWN_COMPONENTS = ("timm", "resnet", "vit_", "convnext", "kornia", "albumentations", "multicrop")


def method_names() -> list[str]:
    registered = get_plugins().registry.names("method")
    return sorted({name.lower() for name in (*registered, *KNOWN_METHODS)})


def component_names() -> list[str]:
    """Backbone and view-generator names: registered ones and well-known ones."""
    registry = get_plugins().registry
    registered = [*registry.names("backbone"), *registry.names("view_generator")]
    return sorted({name.lower() for name in (*registered, *KNOWN_COMPONENTS)})


def docstring_nodes(tree: ast.AST) -> set[int]:
    """``id()`` of every string constant that is a module, class or function docstring."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def code_words(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of every identifier and every non-prose string of ``source``."""
    tree = ast.parse(source)
    docstrings = docstring_nodes(tree)
    words: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Name):
            words.append((line, node.id))
        elif isinstance(node, ast.Attribute):
            words.append((line, node.attr))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            words.append((line, node.name))
        elif isinstance(node, ast.arg):
            words.append((line, node.arg))
        elif isinstance(node, ast.alias):
            words.append((line, node.name))
            if node.asname:
                words.append((line, node.asname))
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "module", None):
            words.append((line, node.module))
        elif isinstance(node, ast.keyword) and node.arg:
            words.append((line, node.arg))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings and not any(c.isspace() for c in node.value):
                words.append((line, node.value))
    return words


def test_the_check_catches_code_and_spares_documentation():
    source = '''
"""Docstring naming BYOL."""
# a comment about SimCLR
from ssl_byol import model
HELP = "train with method=byol for a while"

def pick(method):
    """Another docstring: dino."""
    if method == "dino":
        return SimSiamHead()
'''
    flagged = {
        word for _, word in code_words(source) if any(m in word.lower() for m in KNOWN_METHODS)
    }
    assert flagged == {"ssl_byol", "dino", "SimSiamHead"}


CORE_FILES = sorted(CORE.rglob("*.py"))


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_names_no_backbone_or_view_generator_outside_documentation(path):
    names = component_names()
    hits = [
        f"{path.name}:{line}: {word}"
        for line, word in code_words(path.read_text())
        if any(name in word.lower() for name in names)
    ]
    assert not hits, "backbone or view generator names in core code:\n" + "\n".join(hits)


def test_core_never_imports_timm():
    for path in CORE_FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            assert not any(m.split(".")[0] == "timm" for m in modules), f"{path}: imports timm"


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_names_no_method_outside_documentation(path):
    names = method_names()
    hits = [
        f"{path.name}:{line}: {word}"
        for line, word in code_words(path.read_text())
        if any(name in word.lower() for name in names)
    ]
    assert not hits, "method names in core code:\n" + "\n".join(hits)
