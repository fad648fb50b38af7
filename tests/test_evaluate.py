"""``ssl eval``: label subsets, the linear classifier on known answers, protocols end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ssl_core.cli import main
from ssl_core.evaluation.finetune import balanced_subset
from ssl_core.evaluation.linear import train_linear
from ssl_core.evaluation.protocol import topk_accuracy


def test_balanced_subset_keeps_a_share_of_every_class_fixed_by_the_seed():
    labels = np.repeat(np.arange(4), [100, 50, 7, 1])
    subset = balanced_subset(labels, 0.1, seed=0)
    counts = np.bincount(labels[subset], minlength=4)
    assert counts.tolist() == [10, 5, 1, 1]  # round(n * 0.1), at least one per class
    assert np.array_equal(subset, balanced_subset(labels, 0.1, seed=0))
    assert not np.array_equal(subset, balanced_subset(labels, 0.1, seed=1))
    assert len(balanced_subset(labels, 1.0, seed=0)) == len(labels)
    with pytest.raises(ValueError):
        balanced_subset(labels, 0.0, seed=0)


def test_topk_accuracy_counts_labels_among_the_k_largest_logits():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [1.0, 3.0, 2.0]])
    labels = torch.tensor([0, 1, 0])
    acc = topk_accuracy(logits, labels, ks=(1, 2, 5))
    assert acc[1] == pytest.approx(1 / 3)
    assert acc[2] == pytest.approx(2 / 3)
    assert acc[5] == 1.0  # k capped at the number of classes


def _clusters(n_per_class: int, classes: int, dim: int, seed: int, spread: float):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=generator) * 10
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    features = centres[labels] + spread * torch.randn(len(labels), dim, generator=generator)
    return features, labels


def test_linear_classifier_separates_clusters_and_is_at_chance_on_random_labels():
    train_x, train_y = _clusters(50, 5, 16, seed=0, spread=1.0)
    test_x, test_y = _clusters(20, 5, 16, seed=0, spread=1.0)
    classifier = train_linear(train_x, train_y, 5, epochs=30, lr=1e-2, batch_size=64, seed=0)
    assert topk_accuracy(classifier(test_x), test_y)[1] == 1.0

    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(1000, 16, generator=generator)
    random_labels = torch.randint(0, 5, (1000,), generator=generator)
    classifier = train_linear(
        noise[:800], random_labels[:800], 5, epochs=30, lr=1e-2, batch_size=64, seed=0
    )
    held_out = topk_accuracy(classifier(noise[800:]), random_labels[800:])[1]
    assert held_out < 0.35, f"top-1 {held_out} on random labels is above chance (0.2)"


@pytest.fixture
def checkpoint(tmp_path, tiny_run_args):
    """A tiny untracked pretraining run; its checkpoint path."""
    assert main(["run", *tiny_run_args, "trainer.epochs=1", "tracking.enabled=false"]) == 0
    return tmp_path / "run" / "checkpoint.pt"


def _eval(capsys, protocol: str, *args: str) -> dict:
    code = main(["eval", protocol, "--json", "trainer.num_workers=0", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_linear_finetune_and_knn_run_end_to_end_from_a_checkpoint(checkpoint, capsys):
    capsys.readouterr()
    off = "tracking.enabled=false"
    linear = _eval(capsys, "linear", f"run={checkpoint}", off, "eval.linear_epochs=5")
    assert set(linear["metrics"]) == {"linear/top1", "linear/top5", "linear/train_top1"}
    assert all(0.0 <= v <= 1.0 for v in linear["metrics"].values())
    assert linear["params"]["num_train"] == 28 and linear["params"]["num_val"] == 12
    assert linear["backbone"] == "test_resnet" and linear["eval_run_id"] is None

    finetune = _eval(
        capsys,
        "finetune",
        f"run={checkpoint.parent}",  # the run directory works too
        off,
        "eval.label_fraction=0.25",
        "eval.finetune_epochs=2",
        "eval.batch_size=4",
    )
    assert set(finetune["metrics"]) == {"finetune/top1", "finetune/top5"}
    # 28 training images, 7 per class: a quarter of each class, rounded, is 2
    assert finetune["params"]["num_labelled"] == 8

    knn = _eval(capsys, "knn", f"run={checkpoint}", off)
    assert 0.0 <= knn["metrics"]["knn/top1"] <= 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run=/nonexistent/checkpoint.pt"], "no such file or directory"),
        (["run=0123abcd", "tracking.uri=sqlite:///missing.db"], "no MLflow store"),
        ([], "name the pretrained encoder with run="),
    ],
)
def test_eval_errors_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "linear", *args]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "missing.db").exists()


def test_eval_of_a_file_that_is_no_checkpoint_is_a_user_error(tmp_path, capsys):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("not a checkpoint")
    assert main(["eval", "knn", f"run={bogus}"]) == 2
    assert "is not an ssl_core checkpoint" in capsys.readouterr().err
