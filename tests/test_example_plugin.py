"""The example plugin package, installed as a third party installs it, found and run end to end.

The package is built and installed (``pip install``, no network, no build isolation) into a
temporary folder that the commands below put on ``PYTHONPATH``: ssl_core finds it through
its entry point exactly as it would in a virtual environment, and the environment running the
tests is left as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from installs import EXAMPLE  # noqa: E402


@pytest.fixture
def site(example_site: Path) -> Path:
    return example_site


def run(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("SSL_CORE_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_ssl_plugins_lists_the_example_with_its_version(site, tmp_path):
    result = run(site, "-m", "ssl_core", "plugins", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    plugins = {p["name"]: p for p in listing["plugins"]}
    example = plugins["example"]
    assert (example["distribution"], example["version"]) == ("ssl-plugin-example", "0.1.0")
    assert set(example["components"]) == {
        "method:barlow_twins",
        "backbone:small_cnn",
        "view_generator:crop_flip",
    }
    assert {"byol", "simsiam", "mocov3", "simclr", "dino", "backbones", "augment"} <= set(plugins)
    assert not listing.get("failures")


def test_ssl_run_with_the_examples_method_backbone_and_views(site, tmp_path):
    result = run(
        site,
        "-m",
        "ssl_core",
        "run",
        "method=barlow_twins",
        "backbone=small_cnn",
        "backbone.width=4",
        "augment=crop_flip",
        "data=synthetic",
        "data.num_samples=24",
        "data.image_size=16",
        "trainer.batch_size=8",
        "trainer.epochs=1",
        "trainer.num_workers=0",
        "barlow_twins.proj_hidden_dim=16",
        "barlow_twins.proj_dim=16",
        "tracking.enabled=false",
        f"output_dir={tmp_path}/run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "kNN top-1 after training" in result.stderr
    assert (tmp_path / "run" / "encoder.safetensors").exists()
    config = (tmp_path / "run" / "config.yaml").read_text()
    # The method's recipe reached the optimizer: LARS at lr 0.2.
    assert "name: lars" in config and "lr: 0.2" in config


def test_the_template_tests_pass_against_the_installed_package(site, tmp_path):
    result = run(
        site, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests"), cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-3000:]
