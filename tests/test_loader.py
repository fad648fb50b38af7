"""The loaders and evaluation helpers of ``ssl_core.loader``."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from ssl_core import UserError
from ssl_core.data.features import extract_features
from ssl_core.data.loader import EpochBatchSampler, SampleDataset, build_train_loader, to_device
from ssl_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, normalize


def make_items(n: int, size: int = 8) -> list[tuple[np.ndarray, int]]:
    """Image ``i`` is filled with the value ``i``, so a batch shows which items it holds."""
    return [(np.full((size, size, 3), i, dtype=np.uint8), i % 3) for i in range(n)]


class ToTensor:
    """A trivial per-sample transform: ``{"image": uint8 [3,H,W]}`` (picklable)."""

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        return {"image": torch.from_numpy(image).permute(2, 0, 1).contiguous()}


def loader(items, *, batch_size: int = 4, seed: int = 0, num_workers: int = 0):
    return build_train_loader(
        items,
        ToTensor(),
        batch_size=batch_size,
        num_workers=num_workers,
        seed=seed,
        pin_memory=False,
    )


def order(batches) -> list[int]:
    return [int(v) for batch in batches for v in batch["image"][:, 0, 0, 0]]


def test_data_module_imports_without_torch() -> None:
    code = "import sys, ssl_core.data; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sample_dataset_adds_the_label() -> None:
    dataset = SampleDataset(make_items(5), ToTensor())
    sample = dataset[4]
    assert len(dataset) == 5
    assert sample["label"] == 1
    assert sample["image"].shape == (3, 8, 8)
    assert isinstance(dataset, torch.utils.data.Dataset)
    assert len(pickle.loads(pickle.dumps(dataset))) == 5


def test_train_loader_yields_full_batches_with_labels() -> None:
    batches = list(loader(make_items(10), batch_size=4))
    assert len(batches) == 2  # 10 items, batch 4: the last 2 are dropped
    for batch in batches:
        assert batch["image"].shape == (4, 3, 8, 8) and batch["image"].dtype == torch.uint8
        assert batch["label"].shape == (4,) and batch["label"].dtype == torch.int64
    seen = order(batches)
    assert len(set(seen)) == 8
    assert [v % 3 for v in seen] == [int(v) for b in batches for v in b["label"]]


def test_train_loader_collates_lists_of_views() -> None:
    class TwoViews:
        def __call__(self, image: np.ndarray) -> dict[str, list[torch.Tensor]]:
            x = torch.from_numpy(image).permute(2, 0, 1)
            return {"views": [x, x.flip(-1)]}

    batches = list(
        build_train_loader(
            make_items(6), TwoViews(), batch_size=3, num_workers=0, seed=0, pin_memory=False
        )
    )
    assert len(batches[0]["views"]) == 2
    assert batches[0]["views"][1].shape == (3, 3, 8, 8)


def test_train_loader_order_depends_on_the_seed() -> None:
    items = make_items(32)
    first = order(loader(items, seed=7))
    assert first == order(loader(items, seed=7))
    assert first != order(loader(items, seed=8))
    assert first != list(range(32))  # shuffled


def test_train_loader_with_workers_matches_in_process_order() -> None:
    items = make_items(12)
    with_workers = loader(items, num_workers=1, seed=3)
    assert with_workers.persistent_workers
    assert order(with_workers) == order(loader(items, num_workers=0, seed=3))


def test_too_few_items_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"3 images.*batch_size=8"):
        loader(make_items(3), batch_size=8)


def test_to_device_moves_nested_tensors() -> None:
    batch = {"views": [torch.zeros(2), torch.ones(2)], "label": torch.arange(2), "name": "x"}
    moved = to_device(batch, "cpu")
    assert moved["name"] == "x"
    assert isinstance(moved["views"], list) and torch.equal(moved["views"][1], torch.ones(2))
    assert moved["label"].device.type == "cpu"


def test_eval_transform_resizes_the_shorter_side_and_crops_the_centre() -> None:
    image = np.zeros((30, 60, 3), dtype=np.uint8)
    image[:, 15:45] = 255  # the centre 30×30 square is white, the sides black
    transform = eval_transform(10)
    out = transform(image)
    assert out.shape == (3, 10, 10) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    # the crop holds the white square; only its edge columns are softened by antialiasing
    assert torch.allclose(out[:, :, 1:-1], torch.ones(3, 10, 8), atol=1e-5)
    assert float(out.mean()) > 0.95
    tall = transform(np.full((50, 12, 3), 128, dtype=np.uint8))
    assert tall.shape == (3, 10, 10)
    assert torch.allclose(tall, torch.full_like(tall, 128 / 255), atol=1e-5)
    assert pickle.loads(pickle.dumps(transform)).image_size == 10


def test_eval_transform_keeps_an_image_of_the_right_size() -> None:
    image = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    out = eval_transform(12)(image)
    assert torch.equal(out, torch.from_numpy(image).permute(2, 0, 1).float() / 255)


def test_normalize_round_trip() -> None:
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    y = normalize(x)
    assert y.dtype == torch.float64 and y.shape == x.shape
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    assert torch.allclose(y * std + mean, x)
    grey = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(normalize(grey), torch.zeros(1, 3, 2, 2), atol=1e-6)


def test_extract_features_shapes_and_restores_train_mode() -> None:
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
    encoder.train()
    items = [(np.full((9 + i, 11, 3), 20 * i, dtype=np.uint8), i % 2) for i in range(7)]
    running = encoder[1].running_mean.clone()
    features, labels = extract_features(encoder, items, image_size=8, device="cpu", batch_size=3)
    assert features.shape == (7, 4) and features.dtype == torch.float32
    assert labels.tolist() == [0, 1, 0, 1, 0, 1, 0] and labels.dtype == torch.int64
    assert encoder.training
    assert torch.equal(encoder[1].running_mean, running)  # eval mode: statistics untouched
    encoder.eval()
    extract_features(encoder, items, image_size=8, device="cpu")
    assert not encoder.training


class RandomTransform:
    """A transform that draws from torch's RNG, as view generators do (picklable)."""

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        return {"image": torch.from_numpy(image).permute(2, 0, 1).float() + torch.rand(1)}


def test_resumed_epoch_yields_the_tail_of_the_full_epoch() -> None:
    sampler = EpochBatchSampler(num_items=23, batch_size=4, seed=7)
    sampler.set_epoch(3)
    full = list(sampler)
    assert len(full) == 5 and all(len(batch) == 4 for batch in full)
    sampler.set_epoch(3, start_batch=2)
    assert len(sampler) == 3
    assert list(sampler) == full[2:]
    sampler.set_epoch(4)
    assert list(sampler) != full


def test_views_do_not_depend_on_worker_count() -> None:
    items = make_items(12)

    def views(workers: int) -> list[torch.Tensor]:
        data = build_train_loader(
            items, RandomTransform(), batch_size=4, num_workers=workers, seed=3, pin_memory=False
        )
        data.batch_sampler.set_epoch(1)
        return [batch["image"] for batch in data]

    single, pooled = views(0), views(2)
    assert all(torch.equal(a, b) for a, b in zip(single, pooled, strict=True))
    # the draws differ from sample to sample
    assert len({float(v) for batch in single for v in batch[:, 0, 0, 0] % 1}) > 6
