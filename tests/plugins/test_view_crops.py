"""The geometry of the views: crop boxes drawn as torchvision draws them, cut in the workers.

The ``kornia`` generator draws each view's random resized crop and flip per sample in the
DataLoader workers (:class:`ssl_augment.crops.CropFlip`); the ``albumentations`` generator draws
them inside its pipelines. Both must give the same distribution of boxes over the full image.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from ssl_augment.albumentations_views import TwoViews
from ssl_augment.crops import Box, CropFlip, crop_box, resized_crop
from ssl_augment.recipe import CROP_RATIO, AugmentOptions

from ssl_core.data.loader import build_train_loader

#: Every photometric op off: a view is its crop (and flip).
PHOTOMETRIC_OFF = {
    "jitter_prob": 0.0,
    "grayscale_prob": 0.0,
    "blur_prob_view1": 0.0,
    "blur_prob_view2": 0.0,
    "solarize_prob_view1": 0.0,
    "solarize_prob_view2": 0.0,
}
#: A wide image (5:3, beyond the 4:3 of the widest crop) for the distribution test.
HEIGHT, WIDTH = 96, 160
SAMPLES = 1500  # images; two boxes each
#: The fixed seeds make every p-value below a fixed number: the test cannot flake.
SAME, DIFFERENT = 1e-3, 1e-8


def boxes_of(draw, samples: int = SAMPLES, first_seed: int = 0) -> list[Box]:
    """Boxes drawn by ``draw()`` (a list per call) with torch seeded per sample as the loader does."""
    boxes = []
    for seed in range(first_seed, first_seed + samples):
        torch.default_generator.manual_seed(seed)
        boxes += draw()
    return boxes


def kornia_boxes(options: AugmentOptions, first_seed: int = 0) -> list[Box]:
    transform = CropFlip(options, 16)
    return boxes_of(
        lambda: [box for box, _ in transform.draw(HEIGHT, WIDTH)], first_seed=first_seed
    )


@pytest.fixture(scope="module")
def albumentations_boxes() -> list[Box]:
    transform = TwoViews(AugmentOptions(), 16)
    return boxes_of(lambda: transform.boxes(HEIGHT, WIDTH), first_seed=10**6)


def statistics(boxes: list[Box]) -> dict[str, np.ndarray]:
    top, left, h, w = np.array(boxes, dtype=np.float64).T
    return {
        "area fraction": h * w / (HEIGHT * WIDTH),
        "log aspect ratio": np.log(w / h),
        "centre x": (left + w / 2) / WIDTH,
        "centre y": (top + h / 2) / HEIGHT,
    }


def p_values(first: list[Box], second: list[Box]) -> dict[str, float]:
    a, b = statistics(first), statistics(second)
    return {name: ks_2samp(a[name], b[name]).pvalue for name in a}


# --- the box ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "scale", "always_central"),
    [
        (96, 160, (0.08, 1.0), False),
        (160, 96, (0.08, 1.0), False),
        (32, 32, (0.4, 1.0), False),
        (8, 300, (0.08, 1.0), True),  # no crop of ratio <= 4/3 fits: torchvision's fallback
    ],
)
def test_crop_box_is_torchvisions_get_params_draw_for_draw(height, width, scale, always_central):
    from torchvision.transforms import RandomResizedCrop

    image = torch.empty(1, height, width)
    central = 0
    for seed in range(300):
        torch.default_generator.manual_seed(seed)
        box = crop_box(height, width, scale)
        torch.default_generator.manual_seed(seed)
        assert box == RandomResizedCrop.get_params(image, list(scale), list(CROP_RATIO)), seed
        top, left, h, w = box
        assert 0 <= top <= height - h and 0 <= left <= width - w and h > 0 and w > 0
        central += (top, left) == ((height - h) // 2, (width - w) // 2)
    assert central == 300 if always_central else central < 100


def test_both_generators_draw_boxes_from_one_distribution(albumentations_boxes):
    ours = kornia_boxes(AugmentOptions())
    assert len(ours) == len(albumentations_boxes) == 2 * SAMPLES
    for name, p in p_values(ours, albumentations_boxes).items():
        assert p > SAME, (name, p)


def test_the_box_test_tells_a_wrong_distribution_apart(albumentations_boxes):
    # The test above could pass by being blind; each of these draws would fail it.
    narrow = kornia_boxes(AugmentOptions(crop_scale_min=0.2))
    assert p_values(narrow, albumentations_boxes)["area fraction"] < DIFFERENT

    def wider() -> list[Box]:
        return [crop_box(HEIGHT, WIDTH, (0.08, 1.0), (2 / 3, 3 / 2)) for _ in range(2)]

    wide = boxes_of(wider)
    assert p_values(wide, albumentations_boxes)["log aspect ratio"] < DIFFERENT

    # What the kornia generator did before: crops of the centred square, in image pixels.
    side, offset = HEIGHT, (WIDTH - HEIGHT) // 2

    def centre_square() -> list[Box]:
        boxes = [crop_box(side, side, (0.08, 1.0)) for _ in range(2)]
        return [(top, left + offset, h, w) for top, left, h, w in boxes]

    old = p_values(boxes_of(centre_square), albumentations_boxes)
    assert old["centre x"] < DIFFERENT and old["area fraction"] < DIFFERENT


# --- the crop -----------------------------------------------------------------------------------


def test_crops_come_from_every_part_of_a_non_square_image():
    # Red is the column: a view's red values say which columns of the 64 x 256 image it shows.
    height, width = 64, 256
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 0] = np.arange(width, dtype=np.uint8)
    image[:, :, 1] = 128
    transform = CropFlip(AugmentOptions(**PHOTOMETRIC_OFF), 16)
    covered = np.zeros(width, bool)
    lowest, highest = 255, 0
    for seed in range(1000):  # a box touches a given end about once in 200
        torch.default_generator.manual_seed(seed)
        for (_, left, _, w), _ in transform.draw(height, width):
            covered[left : left + w] = True
        torch.default_generator.manual_seed(seed)
        for crop in transform(image)["crops"]:
            lowest, highest = min(lowest, int(crop[0].min())), max(highest, int(crop[0].max()))
    assert covered.all()
    # The pixels show both ends, not only the centred 64 x 64 square (columns 96-159); area
    # averaging blurs the edge columns by a pixel or two.
    assert lowest <= 2 and highest >= 253


@pytest.mark.parametrize(("height", "width"), [(96, 160), (20, 300), (12, 14)])
def test_worker_crops_are_albumentations_crops_of_the_same_box(height, width):
    # Same box, same pixels: resized as albumentations resizes (area down, bilinear up).
    size = 16
    image = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    transform = TwoViews(AugmentOptions(**PHOTOMETRIC_OFF, flip_prob=0.0), size)
    for seed in range(20):
        torch.default_generator.manual_seed(seed)
        boxes = transform.boxes(height, width)
        torch.default_generator.manual_seed(seed)
        views = transform(image)["views"]
        for box, view in zip(boxes, views, strict=True):
            ours = resized_crop(image, box, size)
            assert np.array_equal(np.ascontiguousarray(ours.transpose(2, 0, 1)), view.numpy())


def test_flip_mirrors_the_crop_with_its_probability():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    whole = {"crop_scale_min": 1.0, "crop_scale_max": 1.0}
    transform = CropFlip(AugmentOptions(**whole, flip_prob=0.5), 16)
    flips = 0
    for seed in range(200):
        torch.default_generator.manual_seed(seed)
        draws = transform.draw(16, 16)
        torch.default_generator.manual_seed(seed)
        crops = transform(image)["crops"]
        for (_, flip), crop in zip(draws, crops, strict=True):
            expected = image[:, ::-1] if flip else image
            assert np.array_equal(crop.numpy(), expected.transpose(2, 0, 1))
            flips += flip
    assert abs(flips / 400 - 0.5) < 4 * math.sqrt(0.25 / 400)


def test_crops_are_a_function_of_the_sample_seed_whatever_the_workers():
    rng = np.random.default_rng(0)
    items = [(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8), 0) for _ in range(8)]
    transform = CropFlip(dataclasses.replace(AugmentOptions(), crop_scale_min=0.08), 16)

    def crops(workers: int) -> list[torch.Tensor]:
        loader = build_train_loader(
            items, transform, batch_size=4, num_workers=workers, seed=3, pin_memory=False
        )
        loader.batch_sampler.set_epoch(2)
        return [crop for batch in loader for crop in batch["crops"]]

    single, pooled = crops(0), crops(2)
    assert len(single) == 4  # 2 batches x 2 views
    assert all(torch.equal(a, b) for a, b in zip(single, pooled, strict=True))
    first = single[0]
    assert len({first[i].numpy().tobytes() for i in range(4)}) == 4
