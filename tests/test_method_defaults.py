"""A method's recipe for the other groups (``register(..., defaults=...)``) and its precedence."""

from __future__ import annotations

import pytest

from ssl_core import hookimpl
from ssl_core.config import build_config
from ssl_core.errors import ConfigError
from ssl_core.plugins import get_plugins
from ssl_core.registry import Registry


class RecipePlugin:
    """A method with a recipe, and a view generator without options."""

    def __init__(self, defaults: dict) -> None:
        self.defaults = defaults

    @hookimpl
    def ssl_register_methods(self, register):
        register("recipe", lambda config: None, defaults=self.defaults)

    @hookimpl
    def ssl_register_view_generators(self, register):
        register("plain", lambda config: None)


def build(defaults: dict, *args: str):
    plugins = get_plugins(extra=[("recipe-plugin", RecipePlugin(defaults))])
    assert plugins.failures == []
    return build_config(["method=recipe", "trainer.device=cpu", *args], plugins.registry)


RECIPE = {"optim.name": "sgd", "optim.lr": 0.05, "augment.crop_scale_min": 0.2}


def test_defaults_apply_where_the_user_set_nothing():
    cfg, _ = build(RECIPE)
    assert (cfg.optim.name, cfg.optim.lr) == ("sgd", 0.05)
    assert cfg.augment.crop_scale_min == 0.2
    assert cfg.optim.weight_decay == 1e-6  # not in the recipe: the core's default


def test_the_user_wins_over_the_recipe():
    cfg, _ = build(RECIPE, "optim.lr=0.3", "augment.crop_scale_min=0.5")
    assert (cfg.optim.name, cfg.optim.lr, cfg.augment.crop_scale_min) == ("sgd", 0.3, 0.5)


def test_a_recipe_may_choose_the_view_generator_but_the_user_decides():
    cfg, selection = build({"augment.name": "plain"})
    assert selection.view_generator.name == "plain" and cfg.augment.name == "plain"
    cfg, selection = build({"augment.name": "plain"}, "augment=kornia")
    assert selection.view_generator.name == "kornia"


def test_keys_the_selected_components_lack_are_skipped():
    cfg, _ = build(RECIPE, "augment=plain")
    assert "crop_scale_min" not in cfg.augment
    assert cfg.optim.lr == 0.05


def test_an_invalid_default_names_the_method_and_its_plugin():
    with pytest.raises(ConfigError, match="method 'recipe' \\(plugin 'recipe-plugin'\\).*optim.lr"):
        build({"optim.lr": "fast"})


def test_out_of_range_defaults_are_caught_like_user_values():
    with pytest.raises(ConfigError, match="optim.lr=-1.0 is out of range"):
        build({"optim.lr": -1.0})


@pytest.mark.parametrize(
    ("kind", "defaults", "message"),
    [
        ("backbone", {"optim.lr": 0.1}, "only a method may"),
        ("method", {"lr": 0.1}, "keys are 'group.key'"),
        ("method", {"method.name": "byol"}, "keys are 'group.key'"),
    ],
)
def test_registration_refuses_misplaced_defaults(kind, defaults, message):
    register = Registry().registrar(kind, "plugin")
    with pytest.raises(ValueError, match=message):
        register("x", lambda config: None, defaults=defaults)


def test_defaults_are_read_only():
    registry = Registry()
    registry.registrar("method", "p")("x", lambda config: None, defaults={"optim.lr": 0.1})
    with pytest.raises(TypeError):
        registry.get("method", "x").defaults["optim.lr"] = 1.0
