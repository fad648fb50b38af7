"""How to test an ssl_core plugin: the loss against hand-computed values, each component alone,
then the installed plugin as ssl_core finds it, and a run end to end.

Run with ``python -m pytest`` in this folder once the package is installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ssl_core.plugins import get_plugins
from ssl_core.testing import assert_contract

from ssl_plugin_example.barlow_twins import barlow_twins_loss
from ssl_plugin_example.plugin import CropFlipOptions
from ssl_plugin_example.small_cnn import SmallCNN
from ssl_plugin_example.views import CenterSquare, CropFlipViews


def test_barlow_twins_loss_by_hand():
    # Standardized, both dimensions of z1 are (1, -1); z2's are (-1, 1) and (1, -1), so
    # C = [[-1, 1], [-1, 1]]: on-diagonal (−1 − 1)² + (1 − 1)² = 4, off-diagonal 1 + 1 = 2.
    z1 = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])
    z2 = torch.tensor([[-1.0, 2.0], [1.0, -2.0]])
    lambd = 0.5
    assert barlow_twins_loss(z1, z2, lambd).item() == pytest.approx(4 + lambd * 2, abs=1e-4)


def test_barlow_twins_loss_is_zero_for_decorrelated_equal_views():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert barlow_twins_loss(z, z, 0.0051).item() == pytest.approx(0.0, abs=1e-4)


def test_small_cnn_gives_num_features_for_any_size():
    model = SmallCNN(width=4)
    for size in (16, 32):
        assert model(torch.randn(2, 3, size, size)).shape == (2, model.num_features)


def test_views_are_two_unit_range_batches():
    images = [np.random.default_rng(i).integers(0, 256, (40, 30, 3), np.uint8) for i in range(4)]
    transform = CenterSquare(16)
    batch = {"image": torch.stack([transform(image)["image"] for image in images])}
    views = CropFlipViews(CropFlipOptions(), 16).ssl_make_views(batch=batch)
    assert len(views) == 2
    for view in views:
        assert view.shape == (4, 3, 16, 16) and view.dtype == torch.float32
        assert 0.0 <= view.min() and view.max() <= 1.0
    assert not torch.equal(views[0], views[1])


def test_the_installed_plugin_registers_its_components():
    plugins = get_plugins()
    assert plugins.failures == []
    registry = plugins.registry
    assert registry.get("method", "barlow_twins").provider == "example"
    assert registry.get("backbone", "small_cnn").provider == "example"
    assert registry.get("view_generator", "crop_flip").provider == "example"


def test_the_ssl_core_contract():
    # ssl_core's own checks of every component this plugin registers (ssl plugins check)
    assert_contract("example")


def test_a_run_end_to_end(tmp_path):
    from ssl_core.cli import main

    args = [
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
    ]
    assert main(args) == 0
    assert (tmp_path / "run" / "encoder.safetensors").exists()
