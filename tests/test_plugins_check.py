"""``ssl plugins check``: the plugin contract from an installed ssl_core, on installed packages.

ssl_core itself is installed (``pip install --target``, no network, no build isolation) into a
temporary folder, and the commands run in another folder with only that on ``PYTHONPATH``: no
``tests/`` or ``examples/`` of this checkout is reachable. The example plugin passes; a copy
of it broken on purpose (its loss is not a scalar, its views leave ``[0, 1]``) fails with those
reasons named. Broken components registered in-process show each check's reason quickly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ssl_core import hookimpl
from ssl_core.plugins import get_plugins
from ssl_core.testing import assert_contract, run_checks

sys.path.insert(0, str(Path(__file__).parent))
from installs import EXAMPLE, ROOT, pip_install  # noqa: E402


def broken_copy(folder: Path) -> Path:
    """The example package, with a loss of shape [B] and views in [-0.5, 1.5]."""
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    package = folder / "ssl_plugin_example"
    loss = package / "barlow_twins.py"
    text = loss.read_text()
    scalar = 'return {"loss": barlow_twins_loss(z1, z2, self.options.lambd)}'
    assert scalar in text
    loss.write_text(text.replace(scalar, scalar[:-1] + " * torch.ones(z1.shape[0])}"))
    views = package / "views.py"
    text = views.read_text()
    clamped = "return torch.where(drawn, gray, images).clamp(0.0, 1.0)"
    assert clamped in text
    views.write_text(text.replace(clamped, "return torch.where(drawn, gray, images) * 2 - 0.5"))
    return folder


@pytest.fixture(scope="module")
def sites(tmp_path_factory, example_site) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sites")
    return {
        "core": pip_install(ROOT, root / "core"),
        "example": example_site,
        "broken": pip_install(broken_copy(root / "broken-src"), root / "broken"),
    }


def ssl(sites: dict[str, Path], plugin: str, *args: str, cwd: Path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(sites[plugin]), str(sites["core"])]),
        "COLUMNS": "400",  # one line per row: the reasons are read below
    }
    env.pop("SSL_CORE_DISABLE_PLUGIN_AUTOLOAD", None)
    code = "import sys, ssl_core; print(ssl_core.__file__, file=sys.stderr); "
    code += "from ssl_core.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def rows(table: str) -> dict[str, str]:
    """``{check: "PASS" or "FAIL reason"}`` from the printed table (one component)."""
    found = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 5 and cells[3] in ("PASS", "FAIL"):
            found[cells[2]] = f"{cells[3]} {cells[4]}".strip()
    return found


def test_the_installed_example_passes_every_check(sites, tmp_path):
    done = ssl(sites, "example", "plugins", "check", "example", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    # ssl_core ran from the installed copy, not from this checkout
    assert done.stderr.splitlines()[0].startswith(str(sites["core"]))
    for component in ("method:barlow_twins", "backbone:small_cnn", "view_generator:crop_flip"):
        assert component in done.stdout
    checks = rows(done.stdout)
    assert len(checks) >= 10 and set(checks.values()) == {"PASS"}, done.stdout
    assert "14 checks of 3 components: 14 passed" in done.stdout


def test_the_broken_copy_fails_with_its_reasons_named(sites, tmp_path):
    done = ssl(sites, "broken", "plugins", "check", "example", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    checks = rows(done.stdout)
    assert checks["loss is a finite scalar"] == (
        "FAIL the loss has shape [4]; it must be a scalar (shape [])"
    )
    assert checks["views in range"].startswith("FAIL view 0 has values in [-0.")
    assert checks["views in range"].endswith("views must be in [0, 1] (the engine normalizes them)")
    assert checks["runs through the engine"].startswith("FAIL RuntimeError: grad can be implicitly")
    for passing in ("options typed", "holds the backbone", "views drawn per sample"):
        assert checks[passing] == "PASS", passing
    assert "14 checks of 3 components: 8 passed, 6 failed" in done.stdout
    as_json = ssl(sites, "broken", "plugins", "check", "crop_flip", "--json", cwd=tmp_path)
    assert as_json.returncode == 1
    failed = [r["check"] for r in json.loads(as_json.stdout) if not r["passed"]]
    assert failed == ["views in range"]


def test_an_unknown_name_is_one_line_and_exit_2(capsys):
    from ssl_core.cli import main

    assert main(["plugins", "check", "no_such_thing"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown plugin or component 'no_such_thing'; plugins: ")
    assert "\n" not in err


# --- each check names what is wrong ----------------------------------------------------------


class NotScalar:
    """A method whose loss is a vector and whose model hides a copy of the backbone."""

    @hookimpl
    def ssl_build_heads(self, backbone):
        import copy

        model = torch.nn.Module()
        model.encoder = copy.deepcopy(backbone)
        return model

    @hookimpl
    def ssl_compute_loss(self, model, views):
        return {"loss": model.encoder(views[0]).sum(dim=1)}


class SameForAll:
    """Views that are one crop for the whole batch, and out of range."""

    @hookimpl
    def ssl_sample_transform(self):
        return lambda image: {"image": torch.from_numpy(image[:16, :16].copy()).permute(2, 0, 1)}

    @hookimpl
    def ssl_make_views(self, batch):
        images = batch["image"].float() / 255
        return [images * 2, images.flip(-1) * 2]


class Broken:
    @hookimpl
    def ssl_register_methods(self, register):
        register("not_scalar", lambda: NotScalar(), views=2)

    @hookimpl
    def ssl_register_view_generators(self, register):
        register("same_for_all", lambda: SameForAll(), views=2)


def test_each_failed_check_names_its_reason():
    plugins = get_plugins(extra=[("broken", Broken())])
    results = {(r.component, r.check): r for r in run_checks(["broken"], plugins)}
    reason = {key: r.reason for key, r in results.items() if not r.passed}
    assert reason[("method:not_scalar", "holds the backbone")].startswith(
        "the model from ssl_build_heads does not hold the backbone object it was given"
    )
    assert reason[("method:not_scalar", "loss is a finite scalar")] == (
        "the loss has shape [4]; it must be a scalar (shape [])"
    )
    assert reason[("view_generator:same_for_all", "views in range")].startswith(
        "view 0 has values in [0, 2]; views must be in [0, 1]"
    )
    assert reason[("view_generator:same_for_all", "views drawn per sample")] == (
        "a batch of one image repeated gives the same view for every image; draw the random "
        "parameters per sample, not per batch"
    )
    assert results[("method:not_scalar", "options typed")].passed
    with pytest.raises(AssertionError, match=r"contract checks failed:\n  method:not_scalar"):
        assert_contract("broken", plugins=plugins)


class Unloadable:
    @hookimpl
    def ssl_register_methods(self, register):
        raise ImportError("No module named 'ssl_mine_heads'")


def test_a_plugin_that_does_not_load_fails_its_first_check(monkeypatch, capsys):
    import ssl_core.plugins
    from ssl_core.cli import main

    plugins = get_plugins(extra=[("mine", Unloadable())])
    monkeypatch.setattr(ssl_core.plugins, "get_plugins", lambda: plugins)
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["plugins", "check", "mine"]) == 1
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if "plugin:mine" in line]
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells == [
        "plugin:mine",
        "mine",
        "loads",
        "FAIL",
        "ssl_register_methods: ImportError: No module named 'ssl_mine_heads'",
    ]
