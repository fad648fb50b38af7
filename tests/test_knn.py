"""The weighted kNN monitor: the vote itself, and the end-to-end evaluation of an encoder."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from ssl_datasets.synthetic import SyntheticDataset

from ssl_core.data import ImageData
from ssl_core.evaluation import knn
from ssl_core.evaluation.knn import knn_eval, knn_top1


def clusters(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two tight clusters around opposite directions, labels 0 and 1."""
    generator = torch.Generator().manual_seed(seed)
    centre = torch.randn(16, generator=generator)
    labels = torch.arange(n) % 2
    signs = labels.float() * 2 - 1
    features = signs[:, None] * centre + 0.05 * torch.randn(n, 16, generator=generator)
    return features, labels


def test_separated_clusters_are_classified_perfectly() -> None:
    train, train_labels = clusters(100, seed=0)
    test, test_labels = clusters(40, seed=1)
    assert knn_top1(train, train_labels, test, test_labels) == 1.0


def test_random_features_score_near_chance() -> None:
    generator = torch.Generator().manual_seed(0)
    train = torch.randn(2000, 32, generator=generator)
    train_labels = torch.randint(0, 10, (2000,), generator=generator)
    test = torch.randn(1000, 32, generator=generator)
    test_labels = torch.randint(0, 10, (1000,), generator=generator)
    accuracy = knn_top1(train, train_labels, test, test_labels, num_classes=10)
    assert 0.0 <= accuracy <= 0.3


def hand_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One query [1, 0]; one class-0 neighbour at cosine 0.99, two class-1 at cosine 0.9."""
    query = torch.tensor([[1.0, 0.0]])
    bank = torch.tensor(
        [
            [0.99, math.sqrt(1 - 0.99**2)],
            [0.9, math.sqrt(1 - 0.9**2)],
            [0.9, -math.sqrt(1 - 0.9**2)],
            [-1.0, 0.0],  # class 0 but opposite: outside the k = 3 nearest
        ]
    )
    return bank, torch.tensor([0, 1, 1, 0]), query, torch.tensor([0])


def test_weighted_vote_beats_majority_vote_at_small_temperature() -> None:
    # k = 3, T = 0.07: class 0 scores exp(0.99/0.07) = exp(14.143) ≈ 1.39e6, class 1 scores
    # 2·exp(0.9/0.07) = 2·exp(12.857) ≈ 7.67e5, so the single close neighbour wins (a
    # majority vote would say class 1).
    bank, bank_labels, query, truth = hand_case()
    assert knn_top1(bank, bank_labels, query, truth, k=3, temperature=0.07) == 1.0


def test_majority_wins_at_large_temperature() -> None:
    # k = 3, T = 1: class 0 scores exp(0.99) ≈ 2.69, class 1 scores 2·exp(0.9) ≈ 4.92.
    bank, bank_labels, query, truth = hand_case()
    assert knn_top1(bank, bank_labels, query, truth, k=3, temperature=1.0) == 0.0


def test_k_is_capped_at_the_bank_size() -> None:
    # k = 50 > 4 takes all four: class 0 has exp(14.143) + exp(-1/0.07), still the largest.
    bank, bank_labels, query, truth = hand_case()
    assert knn_top1(bank, bank_labels, query, truth, k=50, temperature=0.07) == 1.0


def test_tiny_temperature_stays_finite() -> None:
    bank, bank_labels, query, truth = hand_case()
    assert knn_top1(bank, bank_labels, query, truth, k=3, temperature=1e-6) == 1.0


def test_chunked_queries_give_the_same_accuracy(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = torch.Generator().manual_seed(2)
    train = torch.randn(300, 8, generator=generator)
    train_labels = torch.randint(0, 3, (300,), generator=generator)
    test = torch.randn(97, 8, generator=generator)
    test_labels = torch.randint(0, 3, (97,), generator=generator)
    whole = knn_top1(train, train_labels, test, test_labels, k=5)
    monkeypatch.setattr(knn, "SIMILARITY_BUDGET", 300 * 7)  # 7 queries per chunk
    assert knn_top1(train, train_labels, test, test_labels, k=5) == whole


def test_knn_eval_scores_a_random_encoder_on_synthetic_data() -> None:
    config = OmegaConf.create({"data": {"image_size": 16}, "trainer": {"seed": 0}})
    data = SyntheticDataset(48, 3, 0.25, config=config).ssl_build_dataset()
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    accuracy = knn_eval(encoder, data, image_size=16, device="cpu", k=5, temperature=0.07)
    assert accuracy > 0.9  # the classes differ by colour, which pooled features keep
    assert encoder.training


def test_knn_eval_refuses_unlabelled_data() -> None:
    data = ImageData(train=[])
    with pytest.raises(ValueError, match="labelled"):
        knn_eval(torch.nn.Identity(), data, image_size=8, device="cpu", k=1, temperature=0.1)
