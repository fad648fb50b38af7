"""The optimizer of a run: LARS arithmetic, parameter groups, LR scaling and schedules,
frozen groups and gradient clipping."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from ssl_core import ParamGroup, param_groups
from ssl_core.errors import ConfigError
from ssl_core.training.lars import LARS
from ssl_core.training.optim import (
    OptimOptions,
    apply_schedule,
    build_optimizer,
    clip_gradients,
    cosine_between,
    drop_frozen_gradients,
    lr_at,
    warmup_steps,
)


def _options(**overrides):
    return OmegaConf.merge(OmegaConf.structured(OptimOptions), overrides)


def _param(values, grad):
    p = torch.nn.Parameter(torch.tensor(values))
    p.grad = torch.tensor(grad)
    return p


def test_lars_step_matches_hand_computation():
    # w = [3, 4], ‖w‖ = 5; g = [1, 2]; wd = 0.1 → g + wd·w = [1.3, 2.4], ‖·‖ = √(1.69 + 5.76)
    # = √7.45; trust = η‖w‖/‖g‖ = 0.01·5/√7.45; buf = g·trust (first step, buf was 0);
    # w' = w − lr·buf with lr = 2.
    p = _param([3.0, 4.0], [1.0, 2.0])
    opt = LARS([p], lr=2.0, momentum=0.9, weight_decay=0.1, trust_coefficient=0.01)
    opt.step()
    trust = 0.01 * 5.0 / math.sqrt(7.45)
    expected = [3.0 - 2.0 * 1.3 * trust, 4.0 - 2.0 * 2.4 * trust]
    assert p.detach().tolist() == pytest.approx(expected, rel=1e-6)

    # Second step, same gradient: buf = 0.9·buf + g_adapted, ‖w'‖ changed so trust did too.
    buf = torch.tensor([1.3, 2.4], dtype=torch.float64) * trust
    w = torch.tensor(expected, dtype=torch.float64)
    g = torch.tensor([1.0, 2.0], dtype=torch.float64) + 0.1 * w
    buf = 0.9 * buf + g * (0.01 * w.norm() / g.norm())
    p.grad = torch.tensor([1.0, 2.0])
    opt.step()
    assert p.detach().tolist() == pytest.approx((w - 2.0 * buf).tolist(), rel=1e-6)


def test_lars_trust_is_one_when_a_norm_is_zero():
    # ‖w‖ = 0: no adaptation, so w' = 0 − lr·g = −0.5·[1, 1].
    p = _param([0.0, 0.0], [1.0, 1.0])
    LARS([p], lr=0.5, weight_decay=0.0).step()
    assert p.detach().tolist() == [-0.5, -0.5]


def test_lars_excluded_group_is_plain_momentum_sgd():
    # No weight decay and no trust ratio despite both being set: w' = w − lr·g, then
    # buf = 0.9·g + g = 1.9·g, w'' = w' − lr·1.9·g.
    p = _param([3.0, 4.0], [1.0, 2.0])
    opt = LARS(
        [{"params": [p], "lars_exclude": True}],
        lr=0.1,
        momentum=0.9,
        weight_decay=0.5,
        trust_coefficient=1e-3,
    )
    opt.step()
    assert p.detach().tolist() == pytest.approx([2.9, 3.8])
    opt.step()
    assert p.detach().tolist() == pytest.approx([2.9 - 0.19, 3.8 - 0.38])


def test_lars_writes_the_adapted_gradient_into_grad():
    # In place, to spare two copies of every gradient per step: p.grad ends as
    # (g + wd·w)·η‖w‖/‖g + wd·w‖ with the numbers of test_lars_step_matches_hand_computation.
    p = _param([3.0, 4.0], [1.0, 2.0])
    LARS([p], lr=2.0, weight_decay=0.1, trust_coefficient=0.01).step()
    trust = 0.01 * 5.0 / math.sqrt(7.45)
    assert p.grad.tolist() == pytest.approx([1.3 * trust, 2.4 * trust], rel=1e-6)


@pytest.mark.parametrize("kernel", [{"fused": True}, {"foreach": True}])
def test_lars_fused_and_foreach_momentum_kernels_agree(monkeypatch, kernel):
    import ssl_core.training.lars as optim

    monkeypatch.setattr(optim, "_sgd_kernel", lambda device: kernel)
    torch.manual_seed(0)
    w, grads = torch.randn(4, 3), [torch.randn(4, 3) for _ in range(3)]
    p = torch.nn.Parameter(w.clone())
    opt = LARS([p], lr=0.5, momentum=0.9, weight_decay=0.01, trust_coefficient=0.1)
    ref, buf = w.double(), torch.zeros(4, 3, dtype=torch.float64)
    for g in grads:
        p.grad = g.clone()
        opt.step()
        adapted = g.double() + 0.01 * ref
        buf = 0.9 * buf + adapted * (0.1 * ref.norm() / adapted.norm())
        ref = ref - 0.5 * buf
    assert torch.allclose(p.detach().double(), ref, rtol=1e-5, atol=1e-6)


def test_param_groups_exclude_biases_and_norms_and_skip_frozen():
    linear = torch.nn.Linear(3, 2)
    norm = torch.nn.BatchNorm1d(2)
    frozen = torch.nn.Linear(2, 2)
    for p in frozen.parameters():
        p.requires_grad_(False)
    model = torch.nn.Sequential(linear, norm, frozen)

    regular, excluded = param_groups(model)

    assert regular.name == "default" and excluded.name == "default.no_decay"
    assert [id(p) for p in regular.params] == [id(linear.weight)]
    assert {id(p) for p in excluded.params} == {id(linear.bias), id(norm.weight), id(norm.bias)}
    assert (excluded.weight_decay, excluded.exclude_from_lars) == (0.0, True)
    assert (regular.weight_decay, regular.exclude_from_lars) == (None, False)


def test_param_groups_rules_give_a_submodule_its_own_groups():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    groups = param_groups(model, {"1": {"fixed_lr": True}}, no_decay={"lr_scale": 0.5})
    by_name = {g.name: g for g in groups}
    assert list(by_name) == ["default", "default.no_decay", "1", "1.no_decay"]
    assert [id(p) for p in by_name["1"].params] == [id(model[1].weight)]
    assert by_name["1"].fixed_lr and by_name["1.no_decay"].fixed_lr
    assert not by_name["default"].fixed_lr
    assert by_name["default.no_decay"].lr_scale == by_name["1.no_decay"].lr_scale == 0.5
    assert by_name["default"].lr_scale == 1.0
    with pytest.raises(ValueError, match="no submodule 'head'"):
        param_groups(model, {"head": {}})


@pytest.mark.parametrize("name", ["lars", "sgd", "adamw"])
def test_optimizers_build_scale_lr_and_step(name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = build_optimizer(param_groups(model), _options(name=name, lr=0.2), batch_size=512)

    assert [g["base_lr"] for g in opt.param_groups] == pytest.approx([0.4, 0.4])  # 0.2·512/256
    assert opt.param_groups[1]["weight_decay"] == 0.0
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(4, 4)).pow(2).sum().backward()
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_build_optimizer_uses_options():
    model = torch.nn.Linear(4, 3)
    opt = build_optimizer(
        param_groups(model),
        _options(weight_decay=0.01, momentum=0.8, trust_coefficient=0.02),
        batch_size=128,
    )
    group = opt.param_groups[0]
    assert isinstance(opt, LARS)
    assert group["lr"] == pytest.approx(0.45 / 2)
    assert (group["weight_decay"], group["momentum"], group["trust_coefficient"]) == (
        0.01,
        0.8,
        0.02,
    )


def test_momentum_of_one_is_refused():
    with pytest.raises(ConfigError, match="optim.momentum"):
        build_optimizer(param_groups(torch.nn.Linear(2, 2)), _options(momentum=1.0), 256)


def test_lr_at_warmup_then_cosine():
    # warm-up 10 steps, cosine over the remaining 100 steps (total 110), base 1.0
    assert lr_at(0, 110, 10, 1.0) == pytest.approx(0.1)  # 1·(0+1)/10
    assert lr_at(9, 110, 10, 1.0) == pytest.approx(1.0)  # last warm-up step: 1·10/10
    assert lr_at(10, 110, 10, 1.0) == pytest.approx(1.0)  # cosine at progress 0
    assert lr_at(60, 110, 10, 1.0) == pytest.approx(0.5)  # progress 1/2: (1 + cos π/2)/2
    # last step, progress 99/100: (1 + cos 0.99π)/2 = (1 − cos 0.01π)/2 ≈ 2.467e-4
    assert lr_at(109, 110, 10, 1.0) == pytest.approx((1 - math.cos(0.01 * math.pi)) / 2)
    assert lr_at(109, 110, 10, 1.0) == pytest.approx(2.4672e-4, rel=1e-4)
    assert lr_at(110, 110, 10, 1.0) == 0.0


def test_lr_at_without_warmup():
    assert lr_at(0, 100, 0, 2.0) == pytest.approx(2.0)
    assert lr_at(50, 100, 0, 2.0) == pytest.approx(1.0)


def test_warmup_is_at_most_a_fifth_of_the_run(capsys):
    # 10 warm-up epochs of 4 steps in a 5-epoch run (20 steps) would never reach the rate:
    # the warm-up is cut to a fifth, 4 steps, and a note says so.
    assert warmup_steps(10, steps_per_epoch=4, total_steps=20) == 4
    assert "warming up over 4" in capsys.readouterr().err
    assert warmup_steps(1, steps_per_epoch=4, total_steps=20) == 4  # exactly the share
    assert warmup_steps(10, steps_per_epoch=100, total_steps=100 * 100) == 1000  # BYOL's 10 %
    assert capsys.readouterr().err == ""


def _groups_model():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    groups = param_groups(model, {"1": {"fixed_lr": True, "lr_scale": 2.0}})
    return model, groups


def test_schedule_sets_each_group_from_its_base_lr_and_logs_it():
    model, groups = _groups_model()
    opt = build_optimizer(groups, _options(name="sgd", lr=0.1), batch_size=256)
    metrics = apply_schedule(opt, step=0, total_steps=100, warmup=10)
    # default groups warm up from 0.1: 0.1·1/10; group "1" (×2, fixed) stays at 0.2
    assert metrics["lr"] == pytest.approx(0.01)
    assert metrics["lr/default"] == metrics["lr/default.no_decay"] == pytest.approx(0.01)
    assert metrics["lr/1"] == metrics["lr/1.no_decay"] == pytest.approx(0.2)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.01, 0.2, 0.2])
    metrics = apply_schedule(opt, step=55, total_steps=100, warmup=10)
    assert metrics["lr/default"] == pytest.approx(0.05)  # half-way down the cosine
    assert metrics["lr/1"] == pytest.approx(0.2)


def test_weight_decay_follows_a_cosine_to_its_end_value_on_decayed_groups():
    model, groups = _groups_model()
    opt = build_optimizer(groups, _options(weight_decay=0.04, weight_decay_end=0.4), 256)
    # DINO's cosine_scheduler: 0.4 + (0.04 - 0.4)·(1 + cos(πk/K))/2
    for step, expected in ((0, 0.04), (50, 0.22), (100, 0.4)):
        metrics = apply_schedule(opt, step=step, total_steps=100, warmup=0)
        assert metrics["wd/default"] == pytest.approx(expected)
        assert metrics["wd/1"] == pytest.approx(expected)
        assert metrics["wd/default.no_decay"] == 0.0  # biases never decay
    assert cosine_between(0.04, 0.4, 25, 100) == pytest.approx(
        0.4 + (0.04 - 0.4) * (1 + math.cos(math.pi / 4)) / 2
    )


def test_frozen_groups_lose_their_gradients_until_their_epoch():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    groups = param_groups(model, {"1": {"frozen_epochs": 1}})
    opt = build_optimizer(groups, _options(name="sgd"), 256)
    for epoch, frozen in ((0, True), (1, False)):
        model(torch.ones(1, 2)).sum().backward()
        drop_frozen_gradients(opt, epoch)
        assert (model[1].weight.grad is None) is frozen
        assert model[0].weight.grad is not None
        opt.zero_grad()


def test_clipping_per_parameter_and_global():
    a = _param([3.0, 4.0], [6.0, 8.0])  # gradient norm 10
    b = _param([1.0], [1.0])  # gradient norm 1
    opt = build_optimizer([ParamGroup("all", [a, b])], _options(name="sgd"), 256)
    clip_gradients(opt, 3.0, per_param=True)  # DINO: each to norm 3 at most
    assert a.grad.norm().item() == pytest.approx(3.0, rel=1e-5)
    assert torch.equal(b.grad, torch.tensor([1.0]))
    a.grad, b.grad = torch.tensor([6.0, 8.0]), torch.tensor([0.0])
    clip_gradients(opt, 5.0, per_param=False)  # global norm 10 -> 5: every gradient halves
    assert a.grad.tolist() == pytest.approx([3.0, 4.0])
