"""The ``multicrop`` view generator: 2 global + N local views, sizes, options, registration."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from ssl_augment import multicrop
from ssl_augment.multicrop import MultiCropOptions

from ssl_core import ConfigError
from ssl_core.registry import Registry

SIZE = 32


def make_config(size: int = SIZE, **overrides: Any):
    options = dataclasses.asdict(MultiCropOptions(**overrides))
    return OmegaConf.create({"data": {"image_size": size}, "augment": {"name": "x", **options}})


def make_run(config) -> multicrop.MultiCropViews:
    options = {k: v for k, v in config.augment.items() if k != "name"}
    return multicrop.make_run(MultiCropOptions(**options), config)


def make_views(images: list[np.ndarray], config) -> list[torch.Tensor]:
    run = make_run(config)
    transform = run.ssl_sample_transform()
    samples = [transform(image) for image in images]
    count = len(samples[0]["views"])
    batch = {"views": [torch.stack([s["views"][i] for s in samples]) for i in range(count)]}
    return run.ssl_make_views(batch=batch)


def random_images(count: int, height: int = 40, width: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def test_registers_multicrop_not_chosen_by_auto():
    registry = Registry()
    multicrop.ssl_register_view_generators(registry.registrar("view_generator", "multicrop"))
    component = registry.get("view_generator", "multicrop")
    assert component.options is MultiCropOptions and component.auto_for == ()


def test_options_follow_dino():
    options = MultiCropOptions()
    assert (options.crop_scale_min, options.crop_scale_max) == (0.4, 1.0)
    assert (options.local_crop_scale_min, options.local_crop_scale_max) == (0.05, 0.4)
    assert options.local_crops_number == 8
    assert options.local_size(224) == 96
    # Global views keep BYOL's asymmetric blur and solarize; local crops blur half the time.
    assert [(r.blur_prob, r.solarize_prob) for r in options.views()] == [(1.0, 0.0), (0.1, 0.2)]
    assert options.blur_prob_local == 0.5


@pytest.mark.parametrize(("size", "local"), [(224, 96), (32, 14), (16, 8), (8, 8)])
def test_local_size_is_a_fraction_of_the_global_size_at_least_8(size, local):
    assert MultiCropOptions().local_size(size) == local


def test_two_global_then_local_views_in_unit_range():
    views = make_views(random_images(3), make_config(local_crops_number=3))
    assert [tuple(v.shape) for v in views] == [(3, 3, 32, 32)] * 2 + [(3, 3, 14, 14)] * 3
    for view in views:
        assert view.dtype == torch.float32 and 0.0 <= view.min() and view.max() <= 1.0


def test_no_local_crops_gives_two_views():
    views = make_views(random_images(2), make_config(local_crops_number=0))
    assert len(views) == 2


def test_global_views_equal_the_image_when_every_op_is_off():
    image = random_images(1, SIZE, SIZE)[0]
    off = {
        "crop_scale_min": 1.0,
        "flip_prob": 0.0,
        "jitter_prob": 0.0,
        "grayscale_prob": 0.0,
        "blur_prob_view1": 0.0,
        "blur_prob_view2": 0.0,
        "solarize_prob_view2": 0.0,
        "local_crops_number": 1,
    }
    views = make_views([image], make_config(**off))
    expected = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    for view in views[:2]:
        torch.testing.assert_close(view, expected)


def test_transform_pickles_and_workers_draw_anew():
    config = make_config(local_crops_number=2)
    transform = make_run(config).ssl_sample_transform()
    image = random_images(1)[0]
    first = transform(image)["views"]
    clone = pickle.loads(pickle.dumps(transform))
    assert [v.shape for v in clone(image)["views"]] == [v.shape for v in first]


def test_inverted_local_range_is_a_config_error():
    with pytest.raises(ConfigError, match="local_crop_scale_min=0.5 is larger"):
        make_run(make_config(local_crop_scale_min=0.5, local_crop_scale_max=0.3))


def test_views_are_drawn_from_the_per_sample_torch_seed():
    # The loader seeds torch per sample; the same seed must give the same crops in any
    # process, or a resumed run would see other views than the run it continues.
    transform = make_run(make_config()).ssl_sample_transform()
    (image,) = random_images(1)

    def views(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return transform(image)["views"]

    first, again, other = views(5), views(5), views(6)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
