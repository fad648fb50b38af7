"""The EMA helpers of the core: the cosine τ schedule and the in-place target update."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_core.methods.targets import cosine_tau, ema_update_


def test_cosine_tau_starts_at_tau_base() -> None:
    assert cosine_tau(0, 100, 0.99) == pytest.approx(0.99)


def test_cosine_tau_is_halfway_at_half_the_steps() -> None:
    # cos(π/2) = 0, so τ = 1 − 0.01·½ = 0.995
    assert cosine_tau(50, 100, 0.99) == pytest.approx(0.995)


def test_cosine_tau_reaches_one_at_the_last_step() -> None:
    assert cosine_tau(100, 100, 0.99) == pytest.approx(1.0)


def test_cosine_tau_at_a_quarter() -> None:
    expected = 1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2
    assert cosine_tau(25, 100, 0.99) == pytest.approx(expected)


def test_cosine_tau_without_steps_stays_at_tau_base() -> None:
    assert cosine_tau(0, 0, 0.99) == pytest.approx(0.99)
    assert cosine_tau(5, -1, 0.99) == pytest.approx(0.99)


def test_cosine_tau_past_the_end_stays_at_one() -> None:
    assert cosine_tau(150, 100, 0.99) == pytest.approx(1.0)


def test_ema_update_matches_hand_computation() -> None:
    target = [torch.tensor([1.0, 2.0]), torch.tensor([[0.0]])]
    online = [torch.tensor([3.0, 6.0]), torch.tensor([[10.0]])]
    ema_update_(target, online, 0.9)
    # 0.9·[1, 2] + 0.1·[3, 6] = [1.2, 2.4]; 0.9·0 + 0.1·10 = 1
    torch.testing.assert_close(target[0], torch.tensor([1.2, 2.4]))
    torch.testing.assert_close(target[1], torch.tensor([[1.0]]))
    torch.testing.assert_close(online[0], torch.tensor([3.0, 6.0]))
    torch.testing.assert_close(online[1], torch.tensor([[10.0]]))


def test_ema_update_on_parameters_needs_no_grad_context() -> None:
    target = [torch.nn.Parameter(torch.tensor([1.0, 2.0]), requires_grad=False)]
    online = [torch.nn.Parameter(torch.tensor([3.0, 6.0]))]
    ema_update_(target, online, 0.9)
    torch.testing.assert_close(target[0].detach(), torch.tensor([1.2, 2.4]))
    assert online[0].grad is None


def test_ema_update_with_tau_one_keeps_target() -> None:
    target = [torch.tensor([1.0, 2.0])]
    ema_update_(target, [torch.tensor([3.0, 6.0])], 1.0)
    torch.testing.assert_close(target[0], torch.tensor([1.0, 2.0]))


def test_ema_update_refuses_mismatched_lists() -> None:
    with pytest.raises(ValueError, match="one online tensor per target"):
        ema_update_([torch.zeros(1)], [], 0.9)
