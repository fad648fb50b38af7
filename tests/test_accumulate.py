"""Gradient accumulation: K micro-batches of B make one optimizer step of K·B."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ssl_core import cli
from ssl_core.data.loader import EpochBatchSampler
from ssl_core.methods.targets import cosine_tau
from ssl_core.plugins import get_plugins
from ssl_core.training.checkpoint import load_checkpoint

# the toy components sit next to this file (tests are imported by path, not as a package)
sys.path.insert(0, str(Path(__file__).parent))
import toy_plugins  # noqa: E402


def toy_args(root, *extra: str) -> list[str]:
    return [
        "run",
        "method=toy",
        "backbone=tinygn",
        "augment=toyviews",
        "data=synthetic",
        "data.num_samples=64",  # 48 training images: 3 global batches of 16 an epoch
        "data.image_size=16",
        "trainer.epochs=2",
        "trainer.num_workers=0",
        "trainer.checkpoint_every=0",
        "optim.name=sgd",
        "optim.lr=0.5",
        "optim.warmup_epochs=1",
        "eval.knn=false",
        "tracking.enabled=false",
        f"output_dir={root}",
        *extra,
    ]


@pytest.fixture
def recorder(monkeypatch, tmp_path):
    def run(name: str, *extra: str) -> tuple[dict, list]:
        folder = tmp_path / name
        folder.mkdir()
        monkeypatch.setenv("SSL_TEST_RECORD", str(folder))
        record = toy_plugins.Recorder()
        monkeypatch.setattr(
            cli,
            "_load_plugins",
            lambda: get_plugins(extra=[("toy", toy_plugins), ("record", record)]),
        )
        assert cli.main(toy_args(folder / "run", *extra)) == 0
        return load_checkpoint(folder / "run" / "checkpoint.pt"), record.updates

    return run


def test_k_micro_batches_of_b_match_one_step_of_k_times_b(recorder):
    whole, whole_updates = recorder("whole", "trainer.batch_size=16")
    split, split_updates = recorder("split", "trainer.batch_size=8", "trainer.accumulate=2")

    # optimizer steps, target updates and the tau schedule advance once per global batch
    assert whole["step"] == split["step"] == 6
    assert [s for s, _ in split_updates] == [s for s, _ in whole_updates] == list(range(6))
    assert split_updates == whole_updates
    assert split_updates[-1][1] == cosine_tau(5, 6, 0.9) < 1.0
    # the learning rate follows the global batch
    lr = [g["base_lr"] for g in split["optimizer"]["param_groups"]]
    assert lr == [g["base_lr"] for g in whole["optimizer"]["param_groups"]] == [0.5 * 16 / 256] * 2
    for key, value in whole["model"].items():
        torch.testing.assert_close(split["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_sampler_splits_each_global_batch_by_position():
    """Micro-batches of every (process, accumulation step) tile the one-process batch."""
    whole = list(EpochBatchSampler(num_items=50, batch_size=12, seed=3))
    parts = {
        (rank, k): list(
            EpochBatchSampler(
                num_items=50, batch_size=3, seed=3, rank=rank, world_size=2, accumulate=2
            )
        )[k::2]
        for rank in range(2)
        for k in range(2)
    }
    assert len(whole) == 4
    for step, batch in enumerate(whole):
        pieces = [parts[(rank, k)][step] for k in range(2) for rank in range(2)]
        assert [item for piece in pieces for item in piece] == batch  # same order, same seeds
