"""Plugin discovery through entry points, and plugins that fail without taking the rest down."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

from ssl_core import plugins as plugins_module
from ssl_core.plugins import get_plugins

BUILTIN_METHODS = ("byol", "simsiam", "mocov3", "simclr", "dino")


def test_builtin_plugins_come_from_installed_entry_points(plugins):
    names = {ep.name for ep in metadata.entry_points(group="ssl_core")}
    assert {"byol", "backbones", "augment"} <= names
    for name in ("byol", "backbones", "augment"):
        assert plugins.pm.has_plugin(name)
        assert plugins.sources[name][0] == "ssl-core"
    registry = plugins.registry
    assert set(BUILTIN_METHODS) <= set(registry.names("method"))
    assert {"kornia", "albumentations", "multicrop"} <= set(registry.names("view_generator"))
    assert {"digits", "folder", "synthetic"} <= set(registry.names("dataset"))
    assert registry.get("backbone", "resnet50").provider == "backbones"
    assert plugins.failures == []


def test_infos_name_hooks_and_components(plugins):
    infos = {info.name: info for info in plugins.infos()}
    assert "ssl_register_methods" in infos["byol"].hooks
    assert "method:byol" in infos["byol"].components
    assert infos["byol"].version == metadata.version("ssl-core")
    assert "ssl_run_start" in infos["mlflow"].hooks


@pytest.fixture
def fake_entry_points(tmp_path, monkeypatch):
    """Install extra entry points backed by modules written to a temporary folder."""
    monkeypatch.syspath_prepend(str(tmp_path))
    real = list(metadata.entry_points(group="ssl_core"))
    extra: list[metadata.EntryPoint] = []

    def add(name: str, source: str) -> None:
        module = f"fake_plugin_{name}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        extra.append(metadata.EntryPoint(name=name, value=module, group="ssl_core"))

    monkeypatch.setattr(plugins_module.metadata, "entry_points", lambda group: real + extra)
    return add


def test_plugin_failing_on_import_is_reported_and_others_work(fake_entry_points):
    fake_entry_points("broken", "raise ImportError('needs a missing library')")
    loaded = get_plugins()
    (failure,) = loaded.failures
    assert failure.name == "broken"
    assert failure.entry_point == "fake_plugin_broken"
    assert "ImportError: needs a missing library" in failure.error
    assert set(BUILTIN_METHODS) <= set(loaded.registry.names("method"))


def test_hookimpl_not_matching_its_spec_is_reported(fake_entry_points):
    fake_entry_points(
        "mismatch",
        """
        from ssl_core import hookimpl

        @hookimpl
        def ssl_register_methods(register, extra_argument):
            pass
        """,
    )
    fake_entry_points(
        "misspelt",
        """
        from ssl_core import hookimpl

        @hookimpl
        def ssl_register_method(register):
            pass
        """,
    )
    loaded = get_plugins()
    failures = {f.name: f for f in loaded.failures}
    assert set(failures) == {"mismatch", "misspelt"}
    assert "extra_argument" in failures["mismatch"].error
    assert "ssl_register_method" in failures["misspelt"].error
    assert not loaded.pm.has_plugin("mismatch")
    assert loaded.pm.has_plugin("byol")


def test_registration_hook_raising_is_reported(fake_entry_points):
    fake_entry_points(
        "raising",
        """
        from ssl_core import hookimpl

        @hookimpl
        def ssl_register_backbones(register):
            raise RuntimeError("boom")
        """,
    )
    loaded = get_plugins()
    (failure,) = loaded.failures
    assert failure.name == "raising" and "RuntimeError: boom" in failure.error


def test_duplicate_component_names_both_providers(fake_entry_points):
    fake_entry_points(
        "zz_copycat",
        """
        from ssl_core import hookimpl

        @hookimpl
        def ssl_register_methods(register):
            register("byol", lambda config: None)
        """,
    )
    loaded = get_plugins()
    (failure,) = loaded.failures
    assert "method 'byol' is registered twice" in failure.error
    assert "'byol'" in failure.error and "'zz_copycat'" in failure.error
    assert loaded.registry.get("method", "byol").provider == "byol"


def test_autoload_can_be_disabled_and_plugins_blocked(monkeypatch):
    monkeypatch.setenv("SSL_CORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert not get_plugins().pm.has_plugin("byol")
    monkeypatch.delenv("SSL_CORE_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("SSL_CORE_BLOCK_PLUGINS", "byol")
    loaded = get_plugins()
    assert not loaded.pm.has_plugin("byol") and loaded.pm.has_plugin("backbones")


def test_ssl_plugins_json_does_not_import_torch():
    code = (
        "import sys, json; from ssl_core.cli import main; main(['plugins', '--json']); "
        "print(json.dumps({'torch': 'torch' in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    listing, _, flag = out.rpartition("\n{")
    assert json.loads("{" + flag) == {"torch": False}
    names = {p["name"] for p in json.loads(listing)["plugins"]}
    assert {"byol", "backbones", "augment", "datasets", "mlflow"} <= names
