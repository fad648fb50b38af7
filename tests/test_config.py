"""Config resolution: overrides, selection of components, and one-line errors."""

from __future__ import annotations

import pytest
from omegaconf.errors import ReadonlyConfigError

from ssl_core.config import build_config, flatten, parse_overrides
from ssl_core.errors import ConfigError, UserError


def build(plugins, *args):
    return build_config(list(args), plugins.registry)


def test_bare_group_value_is_its_name():
    assert parse_overrides(["backbone=resnet18", "backbone.small_input=true"]) == [
        ("backbone.name", "resnet18"),
        ("backbone.small_input", "true"),
    ]


def test_defaults_and_selected_options_are_present(plugins):
    cfg, selection = build(plugins, "method=byol", "trainer.device=cpu")
    assert cfg.method.name == "byol"
    assert cfg.byol.tau_base == pytest.approx(0.99)  # the paper's value for 100-300 epochs
    assert cfg.backbone.small_input is False
    assert cfg.augment.name == "albumentations"  # auto on CPU
    assert selection.view_generator.name == "albumentations"
    assert cfg.data.name == "digits"
    assert cfg.tracking.uri == "sqlite:///mlflow.db"
    assert "optim.lr" in flatten(cfg)


def test_overrides_are_typed(plugins):
    cfg, _ = build(
        plugins,
        "method=byol",
        "backbone=resnet50",
        "backbone.small_input=true",
        "byol.tau_base=0.996",
        "trainer.batch_size=64",
        "augment=kornia",
    )
    assert cfg.backbone.name == "resnet50"
    assert cfg.backbone.small_input is True
    assert cfg.byol.tau_base == 0.996
    assert cfg.trainer.batch_size == 64
    assert cfg.augment.name == "kornia"


def test_resolved_config_is_read_only(plugins):
    cfg, _ = build(plugins, "method=byol")
    with pytest.raises(ReadonlyConfigError):
        cfg.trainer.epochs = 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["trainer.batch_sise=4"],
            "unknown config key 'trainer.batch_sise' (did you mean 'trainer.batch_size'?)",
        ),
        (["trainer.batch_size=abc"], "invalid value trainer.batch_size='abc': expected int"),
        (["trainer.batch_size=1"], "trainer.batch_size=1 is out of range; must be >= 2"),
        (["byol.tau_base=1.5"], "byol.tau_base=1.5 is out of range; must be in [0.0, 1.0]"),
        (["optim.lr=-1"], "optim.lr=-1.0 is out of range; must be >= 0"),
        (["optim.name=adam"], "invalid value optim.name='adam'; valid: lars, sgd, adamw"),
        (["method=byl"], "unknown method 'byl' (method=byl); did you mean: byol"),
        (["backbone=resnet19"], "unknown backbone 'resnet19' (backbone=resnet19); did you mean: "),
        (["augment=korna"], "unknown view generator 'korna' (augment=korna); did you mean: kornia"),
        (["data=digit"], "unknown dataset 'digit' (data=digit); did you mean: digits"),
        (["trainer.device=tpu"], "invalid value trainer.device='tpu'; valid: auto, cpu, cuda, mps"),
        (["epochs"], "expected key=value, got 'epochs'"),
    ],
)
def test_user_errors_are_one_line(plugins, args, message):
    with pytest.raises(ConfigError) as info:
        build(plugins, "method=byol", *args)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_unknown_backbone_lists_suggestions_from_timm(plugins):
    with pytest.raises(UserError, match="resnet18"):
        build(plugins, "method=byol", "backbone=resnet19")


def test_method_options_exist_only_for_the_selected_method(plugins):
    with pytest.raises(ConfigError, match="unknown config key 'byl.tau_base'"):
        build(plugins, "method=byol", "byl.tau_base=0.9")
