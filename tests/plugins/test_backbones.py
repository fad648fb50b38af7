"""The timm backbone family: registration, name lookup, features, the small-input stem."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf
from ssl_backbones import plugin
from ssl_backbones.timm_backbone import create_backbone

from ssl_core import UserError
from ssl_core.config import component_options
from ssl_core.registry import Registry, UnknownComponentError


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    plugin.ssl_register_backbones(registry.registrar("backbone", "backbones"))
    return registry


def _config(name: str, small_input: bool = False, drop_path_rate: float = 0.0):
    return OmegaConf.create(
        {"backbone": {"name": name, "small_input": small_input, "drop_path_rate": drop_path_rate}}
    )


def _build(name: str, **options) -> torch.nn.Module:
    return plugin.TimmBackbone(name, plugin.BackboneOptions(**options)).ssl_build_backbone()


def test_registers_one_family_answering_for_timm_names(registry):
    family = registry.get("backbone", "resnet18")
    assert family.name == "timm" and family.is_family
    assert family.options is plugin.BackboneOptions
    assert registry.get("backbone", "resnet50.a1_in1k") is family
    assert registry.names("backbone") == ["timm"]


def test_unknown_name_suggests_the_closest(registry):
    with pytest.raises(UnknownComponentError, match="did you mean: .*resnet18") as err:
        registry.get("backbone", "resnet19")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("odd", ["", ".", "hf-hub:", "a/b", "résnet", "x" * 500, None, 18])
def test_matches_says_no_to_odd_names(odd):
    assert plugin.is_timm_model(odd) is False


def test_options_have_no_name_field_and_are_read_from_the_config(registry):
    # The core owns backbone.name; a field of that name would collide with it.
    assert "name" not in {f.name for f in dataclasses.fields(plugin.BackboneOptions)}
    family = registry.get("backbone", "resnet18")
    assert component_options(family, _config("resnet18", True, 0.1)) == (
        plugin.BackboneOptions(small_input=True, drop_path_rate=0.1)
    )
    run = family.make(_config("resnet50", True), component_options(family, _config("resnet50")))
    assert run.name == "resnet50"


def test_the_family_is_the_default_backbone_as_resnet18(registry):
    family, name = registry.default("backbone")
    assert (family.name, name) == ("timm", "resnet18")


def test_resnet18_gives_pooled_features():
    model = _build("resnet18").eval()
    with torch.no_grad():
        features = model(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 512)
    assert model.num_features == 512


def test_small_input_swaps_the_stem():
    model = _build("resnet18", small_input=True).eval()
    conv1 = model.conv1
    assert (conv1.kernel_size, conv1.stride, conv1.out_channels) == ((3, 3), (1, 1), 64)
    assert conv1.bias is None
    assert isinstance(model.maxpool, torch.nn.Identity)
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32)
        assert model.forward_features(x).shape == (2, 512, 4, 4)
        assert model(x).shape == (2, 512)


def test_small_input_on_a_vit_is_a_one_line_user_error():
    with pytest.raises(UserError) as err:
        _build("vit_tiny_patch16_224", small_input=True)
    message = str(err.value)
    assert "\n" not in message
    assert "vit_tiny_patch16_224" in message
    assert "ResNet-style stems" in message and "resnet18" in message


def test_a_model_timm_cannot_build_is_a_one_line_user_error():
    # VGG has no stochastic depth, so timm refuses the keyword before allocating anything.
    with pytest.raises(UserError, match="timm could not build backbone 'vgg11'") as err:
        _build("vgg11", drop_path_rate=0.1)
    assert "\n" not in str(err.value)


def test_drop_path_rate_reaches_timm():
    model = create_backbone("test_vit", drop_path_rate=0.2)
    rates = [m.drop_prob for m in model.modules() if hasattr(m, "drop_prob")]
    assert rates and max(rates) == pytest.approx(0.2)


def test_resnet50_builds_with_2048_features():
    model = _build("resnet50").eval()
    assert model.num_features == 2048
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2048)


def test_plugin_module_imports_neither_torch_nor_timm():
    code = "import sys, ssl_backbones.plugin; print('torch' in sys.modules, 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_export_hint_says_how_timm_loads_the_file(tmp_path):
    """``ssl_export_hint``: a plain model loads through timm's file overlay; the small-input
    stem, which timm lacks, through ssl_core.load_encoder."""
    out = tmp_path / "encoder.safetensors"
    plain = plugin.TimmBackbone("resnet18", plugin.BackboneOptions()).ssl_export_hint(path=out)
    assert "timm.create_model('resnet18', pretrained=True, num_classes=0" in plain
    assert f"pretrained_cfg_overlay=dict(file='{out}')" in plain
    small = plugin.TimmBackbone("resnet18", plugin.BackboneOptions(small_input=True))
    hint = small.ssl_export_hint(path=out)
    assert "small-input ResNet stem" in hint and "ssl_core.load_encoder(" in hint
