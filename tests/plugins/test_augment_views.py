"""The view generator plugin: both generators' views, sample transforms, options, registration."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import pickle
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from ssl_augment import plugin
from ssl_augment.kornia_views import rotate_hue
from ssl_augment.recipe import AugmentOptions, blur_kernel_size

from ssl_core import ConfigError
from ssl_core.config import component_options
from ssl_core.registry import Registry

SIZE = 32
GENERATORS = ("kornia", "albumentations")
#: Every random op off and the crop the whole image: the views must equal the input.
IDENTITY = {
    "crop_scale_min": 1.0,
    "crop_scale_max": 1.0,
    "flip_prob": 0.0,
    "jitter_prob": 0.0,
    "grayscale_prob": 0.0,
    "blur_prob_view1": 0.0,
    "blur_prob_view2": 0.0,
    "solarize_prob_view1": 0.0,
    "solarize_prob_view2": 0.0,
}


def make_config(size: int = SIZE, **overrides: Any):
    options = dataclasses.asdict(AugmentOptions(**overrides))
    return OmegaConf.create({"data": {"image_size": size}, "augment": {"name": "x", **options}})


def registry() -> Registry:
    reg = Registry()
    plugin.ssl_register_view_generators(reg.registrar("view_generator", "augment"))
    return reg


def run_plugin(name: str, config) -> Any:
    component = registry().get("view_generator", name)
    return component.make(config, component_options(component, config))


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    (key,) = samples[0]  # "crops" (kornia) or "views" (albumentations)
    count = len(samples[0][key])
    return {key: [torch.stack([s[key][i] for s in samples]) for i in range(count)]}


def make_views(name: str, images: list[np.ndarray], config=None) -> list[torch.Tensor]:
    config = config if config is not None else make_config()
    run = run_plugin(name, config)
    transform = run.ssl_sample_transform()
    return run.ssl_make_views(batch=collate([transform(image) for image in images]))


def random_images(count: int, height: int = SIZE, width: int = SIZE, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def smooth_image(height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """A colourful image with structure, so that crops and flips show."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [np.sin(x / 5.0), np.cos(y / 7.0), np.sin((x + y) / 9.0)]
    return (np.stack(channels, axis=-1) * 100 + 128).astype(np.uint8)


def as_float(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


# --- registration and options -----------------------------------------------------------------


def test_registers_both_generators_with_auto_devices():
    reg = registry()
    assert reg.names("view_generator") == ["albumentations", "kornia"]
    assert reg.get("view_generator", "kornia").auto_for == ("cuda", "mps")
    assert reg.get("view_generator", "albumentations").auto_for == ("cpu",)
    assert reg.auto("view_generator", "cpu").name == "albumentations"
    for component in reg.components["view_generator"].values():
        assert component.options is AugmentOptions
        assert component.description


def test_options_follow_the_byol_table():
    options = AugmentOptions()
    assert (options.crop_scale_min, options.crop_scale_max) == (0.08, 1.0)
    assert (options.flip_prob, options.jitter_prob, options.grayscale_prob) == (0.5, 0.8, 0.2)
    assert (options.brightness, options.contrast, options.saturation, options.hue) == (
        0.4,
        0.4,
        0.2,
        0.1,
    )
    assert (options.blur_sigma_min, options.blur_sigma_max) == (0.1, 2.0)
    view1, view2 = options.views()
    assert (view1.blur_prob, view1.solarize_prob) == (1.0, 0.0)
    assert (view2.blur_prob, view2.solarize_prob) == (0.1, 0.2)
    assert "name" not in {f.name for f in dataclasses.fields(AugmentOptions)}
    for field in dataclasses.fields(AugmentOptions):
        if field.name.endswith("_prob") or "_prob_" in field.name:
            assert (field.metadata["min"], field.metadata["max"]) == (0.0, 1.0)


@pytest.mark.parametrize(("size", "kernel"), [(8, 3), (32, 3), (64, 7), (96, 11), (224, 23)])
def test_blur_kernel_is_a_tenth_of_the_image_odd_and_at_least_3(size, kernel):
    assert blur_kernel_size(size) == kernel


@pytest.mark.parametrize("name", GENERATORS)
def test_inverted_ranges_are_config_errors(name):
    with pytest.raises(ConfigError, match="crop_scale_min"):
        run_plugin(name, make_config(crop_scale_min=0.9, crop_scale_max=0.5))
    with pytest.raises(ConfigError, match="blur_sigma_min"):
        run_plugin(name, make_config(blur_sigma_min=3.0, blur_sigma_max=2.0))


# --- both generators ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", GENERATORS)
def test_views_are_float_batches_in_unit_range(name):
    views = make_views(name, random_images(6))
    assert len(views) == 2
    for view in views:
        assert view.shape == (6, 3, SIZE, SIZE)
        assert view.dtype == torch.float32
        assert view.min() >= 0.0 and view.max() <= 1.0


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("shape", [(40, 60, 3), (60, 40, 3), (8, 8, 3), (32, 32, 3), (50, 50)])
def test_sample_transform_takes_any_size_and_pickles(name, shape):
    config = make_config()
    transform = run_plugin(name, config).ssl_sample_transform()
    transform = pickle.loads(pickle.dumps(transform))
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    sample = transform(image)
    (tensors,) = sample.values()
    assert len(tensors) == 2
    for tensor in tensors:
        assert tensor.shape == (3, SIZE, SIZE)
        assert tensor.dtype == torch.uint8
        assert tensor.is_contiguous()


@pytest.mark.parametrize("name", GENERATORS)
def test_sample_transform_rejects_non_8bit_images(name):
    config = make_config()
    transform = run_plugin(name, config).ssl_sample_transform()
    with pytest.raises(ValueError, match="uint8"):
        transform(np.zeros((SIZE, SIZE, 3), dtype=np.float32))


@pytest.mark.parametrize("name", GENERATORS)
def test_the_two_views_differ(name):
    view1, view2 = make_views(name, [smooth_image()] * 4)
    assert not torch.allclose(view1, view2, atol=0.05)


@pytest.mark.parametrize("name", GENERATORS)
def test_parameters_are_drawn_per_sample(name):
    batch = 8
    for view in make_views(name, [smooth_image()] * batch):
        distinct = {view[i].numpy().tobytes() for i in range(batch)}
        assert len(distinct) == batch


@pytest.mark.parametrize("name", GENERATORS)
def test_views_equal_the_input_when_every_op_is_off(name):
    images = random_images(4)
    for view in make_views(name, images, make_config(**IDENTITY)):
        torch.testing.assert_close(view, as_float(images), atol=0.5 / 255, rtol=0)


def test_kornia_views_equal_the_workers_crops_when_every_photometric_op_is_off():
    images = random_images(4, height=40, width=60)
    photometric_off = {k: v for k, v in IDENTITY.items() if not k.startswith("crop_")}
    run = run_plugin("kornia", make_config(**photometric_off))
    batch = collate([run.ssl_sample_transform()(image) for image in images])
    views = run.ssl_make_views(batch=batch)
    for view, crops in zip(views, batch["crops"], strict=True):
        torch.testing.assert_close(view, crops.float() / 255, atol=1e-6, rtol=0)
    assert not torch.equal(batch["crops"][0], batch["crops"][1])


@pytest.mark.parametrize("name", GENERATORS)
def test_solarize_threshold_is_exactly_one_half(name):
    values = np.arange(256, dtype=np.uint8)
    image = np.broadcast_to(values.reshape(16, 16, 1), (16, 16, 3))
    image = np.tile(image, (2, 2, 1))  # 32 x 32, every value present
    view1, view2 = make_views(
        name, [image] * 2, make_config(**{**IDENTITY, "solarize_prob_view2": 1.0})
    )
    original = as_float([image] * 2)
    torch.testing.assert_close(view1, original, atol=1e-6, rtol=0)
    expected = torch.where(original >= 0.5, 1.0 - original, original)
    torch.testing.assert_close(view2, expected, atol=1e-6, rtol=0)
    assert (original < 0.5).sum() == 128 * 3 * 2 * 4  # 0..127 below, 128..255 at or above


@pytest.mark.parametrize("name", GENERATORS)
def test_blur_follows_the_view_probabilities(name):
    images = random_images(4)
    config = make_config(**{**IDENTITY, "blur_prob_view1": 1.0})
    view1, view2 = make_views(name, images, config)
    original = as_float(images)

    def roughness(x: torch.Tensor) -> float:
        return (x[..., 1:] - x[..., :-1]).abs().mean().item()

    assert roughness(view1) < 0.8 * roughness(original)
    torch.testing.assert_close(view2, original, atol=0.5 / 255, rtol=0)


@pytest.mark.parametrize("name", GENERATORS)
def test_grayscale_only_gives_equal_channels(name):
    config = make_config(**{**IDENTITY, "grayscale_prob": 1.0})
    for view in make_views(name, random_images(4), config):
        torch.testing.assert_close(view[:, 0], view[:, 1], atol=1 / 255, rtol=0)
        torch.testing.assert_close(view[:, 1], view[:, 2], atol=1 / 255, rtol=0)


# --- kornia -------------------------------------------------------------------------------------


def test_kornia_leaves_the_batch_untouched():
    config = make_config(**{**IDENTITY, "jitter_prob": 1.0, "solarize_prob_view1": 1.0})
    run = run_plugin("kornia", config)
    crops = [torch.randint(0, 256, (4, 3, SIZE, SIZE), dtype=torch.uint8) for _ in range(2)]
    before = [c.clone() for c in crops]
    pipeline = run.pipelines[0]
    floats = crops[0].float() / 255
    floats_before = floats.clone()
    run.ssl_make_views(batch={"crops": crops})
    assert not torch.equal(pipeline(floats), floats)
    assert all(torch.equal(c, b) for c, b in zip(crops, before, strict=True))
    assert torch.equal(floats, floats_before)


def test_kornia_hue_shift_matches_kornia_adjust_hue():
    from kornia.enhance import adjust_hue

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 8, 8, generator=generator)
    images[0] = images[0, :1]  # grey: hue undefined
    images[1, 0] = images[1, 1]  # ties between the largest channels
    images[2] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    radians = (torch.rand(6, generator=generator) - 0.5) * 2 * math.pi
    torch.testing.assert_close(
        rotate_hue(images, radians), adjust_hue(images, radians), atol=1e-5, rtol=0
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_kornia_views_stay_on_the_device():
    config = make_config()
    run = run_plugin("kornia", config)
    crops = [
        torch.randint(0, 256, (4, 3, SIZE, SIZE), dtype=torch.uint8, device="cuda")
        for _ in range(2)
    ]
    for view in run.ssl_make_views(batch={"crops": crops}):
        assert view.dtype == torch.float32
        assert view.device.type == "cuda"
        assert view.shape == (4, 3, SIZE, SIZE)
        assert view.min() >= 0.0 and view.max() <= 1.0


# --- albumentations -----------------------------------------------------------------------------


def test_albumentations_draws_are_seeded_by_torch_per_process():
    config = make_config()
    transform = run_plugin("albumentations", config).ssl_sample_transform()
    image = smooth_image(48, 64)

    def draw(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return pickle.loads(pickle.dumps(transform))(image)["views"]

    first, again, other = draw(1), draw(1), draw(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
def test_albumentations_workers_do_not_repeat_each_other():
    config = make_config()
    transform = run_plugin("albumentations", config).ssl_sample_transform()
    image = smooth_image()

    class Same(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> dict[str, Any]:
            return transform(image)

    loader = torch.utils.data.DataLoader(
        Same(), batch_size=2, num_workers=2, multiprocessing_context="fork"
    )
    first, second = list(loader)[:2]  # one batch from each worker
    assert not torch.equal(first["views"][0], second["views"][0])
