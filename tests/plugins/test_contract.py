"""The plugin contract, checked on every registered method, backbone, view generator and dataset.

The checks live in the package (:mod:`ssl_core.testing`, what ``ssl plugins check`` runs);
this file parametrizes them over what the installed plugins register, plus the example plugin
package (loaded from ``examples/ssl-plugin-example`` when it is not installed), so a new
plugin is checked by adding it, with no test of its own. See docs/plugins.md for the contract.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ssl_core.config import build_config
from ssl_core.plugins import Plugins, get_plugins
from ssl_core.testing import cases, run_check

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ssl-plugin-example"
#: Names tried first for a backbone family (a component answering for many names, like timm's).
FAMILY_SAMPLES = ("test_resnet", "resnet18")


def load_plugins() -> Plugins:
    """Installed plugins, plus the example package from its folder if it is not installed."""
    plugins = get_plugins()
    if plugins.pm.has_plugin("example"):
        return plugins
    if str(EXAMPLE) not in sys.path:
        sys.path.append(str(EXAMPLE))
    from ssl_plugin_example import plugin as example

    return get_plugins(extra=[("example", example)])


PLUGINS = load_plugins()
CASES = cases(PLUGINS, prefer=FAMILY_SAMPLES)


def test_every_builtin_component_is_checked():
    labels = {target.label for target, _ in CASES}
    methods = {"byol", "simsiam", "mocov3", "simclr", "dino", "barlow_twins"}
    assert {f"method:{name}" for name in methods} <= labels
    assert {"backbone:test_resnet", "backbone:small_cnn", "view_generator:kornia"} <= labels
    assert "dataset:digits" in labels


@pytest.mark.parametrize(
    ("target", "check"), CASES, ids=[f"{t.label}-{c.replace(' ', '_')}" for t, c in CASES]
)
def test_contract(target, check):
    result = run_check(PLUGINS, target, check)
    assert result.passed, result.reason


# --- lifecycle -------------------------------------------------------------------------------


def test_validate_config_stops_a_run_before_any_work(tmp_path):
    from ssl_core import UserError, hookimpl
    from ssl_core.training.engine import train

    class Refuse:
        @hookimpl
        def ssl_validate_config(self, config):
            if config.trainer.batch_size < 8:
                raise UserError(f"trainer.batch_size={config.trainer.batch_size}; needs >= 8")

    plugins = get_plugins(extra=[("refuse", Refuse())])
    config, selection = build_config(
        [
            "method=byol",
            "backbone=test_resnet",
            "data=synthetic",
            "trainer.batch_size=4",
            "tracking.enabled=false",
            f"output_dir={tmp_path}/run",
        ],
        plugins.registry,
    )
    with pytest.raises(UserError, match="needs >= 8"):
        train(config, selection, plugins)
    assert not (tmp_path / "run").exists()
