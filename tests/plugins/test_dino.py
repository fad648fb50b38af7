"""The DINO plugin: loss and centre by hand, multi-crop forward, schedules, teacher, registration."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from ssl_dino import plugin
from ssl_dino.heads import DINOHead, WeightNormLinear
from ssl_dino.loss import dino_loss, teacher_temp_at, update_center_
from ssl_dino.model import multicrop_forward
from ssl_dino.options import DINOOptions
from torch import nn

from ssl_core.registry import Registry

MOMENTUM = 0.99


class TinyBackbone(nn.Module):
    """Any image size to 8 features: a conv and a global pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.num_features = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


@pytest.fixture
def config():
    return OmegaConf.create(
        {
            "dino": {
                "out_dim": 10,
                "hidden_dim": 16,
                "bottleneck_dim": 6,
                "momentum_teacher": MOMENTUM,
                "freeze_last_layer_epochs": 1,
            }
        }
    )


@pytest.fixture
def run(config) -> plugin.DINORun:
    return plugin.make_run(config)


@pytest.fixture
def model(run, config):
    torch.manual_seed(0)
    return run.ssl_build_heads(config=config, backbone=TinyBackbone()).train()


def multicrop_views(local: int = 2) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 16, 16, generator=generator) for _ in range(2)] + [
        torch.randn(4, 3, 8, 8, generator=generator) for _ in range(local)
    ]


# --- loss and centre ----------------------------------------------------------------------


def entropy(p: list[float]) -> float:
    return -sum(x * math.log(x) for x in p)


def test_dino_loss_by_hand_two_global_crops():
    # τ = 1 and no centre: teacher 1 is softmax(ln 3, 0) = (3/4, 1/4), teacher 2 uniform;
    # student 1 uniform, student 2 softmax(ln 3, 0). Pairs (t1, s2) and (t2, s1):
    # H((3/4, 1/4), (3/4, 1/4)) = entropy, H(uniform, uniform) = ln 2.
    ln3 = math.log(3.0)
    teacher = [torch.tensor([[ln3, 0.0]]), torch.tensor([[0.0, 0.0]])]
    student = [torch.tensor([[0.0, 0.0]]), torch.tensor([[ln3, 0.0]])]
    loss = dino_loss(student, teacher, torch.zeros(1, 2), 1.0, 1.0)
    assert loss.item() == pytest.approx((entropy([0.75, 0.25]) + math.log(2)) / 2)


def test_dino_loss_by_hand_with_a_local_crop_centre_and_temperatures():
    # Teacher temperature 0.5 and centre (ln 3 / 2, 0): teacher 1 logits (ln 3, 0) become
    # (ln 3 − ln 3/2, 0)/0.5 = (ln 3, 0) → (3/4, 1/4); teacher 2 (ln 3/2, 0) → uniform.
    # Student temperature 2 on student logits (2 ln 3, 0) → (3/4, 1/4); zeros → uniform.
    ln3 = math.log(3.0)
    center = torch.tensor([[ln3 / 2, 0.0]])
    teacher = [torch.tensor([[ln3, 0.0]]), torch.tensor([[ln3 / 2, 0.0]])]
    student = [
        torch.tensor([[0.0, 0.0]]),  # global 1: skipped against teacher 1
        torch.tensor([[2 * ln3, 0.0]]),  # global 2: skipped against teacher 2
        torch.tensor([[0.0, 0.0]]),  # local
    ]
    loss = dino_loss(student, teacher, center, student_temp=2.0, teacher_temp=0.5)
    # Pairs (t1, s2) = H((3/4, 1/4), (3/4, 1/4)); (t1, s3), (t2, s1), (t2, s3) each cross a
    # distribution with the uniform one, which is ln 2 whatever the distribution.
    expected = (entropy([0.75, 0.25]) + 3 * math.log(2)) / 4
    assert loss.item() == pytest.approx(expected)


def test_dino_loss_gives_the_teacher_no_gradient():
    student = [torch.randn(3, 5, requires_grad=True) for _ in range(3)]
    teacher = [torch.randn(3, 5, requires_grad=True) for _ in range(2)]
    dino_loss(student, teacher, torch.zeros(1, 5), 0.1, 0.04).backward()
    assert all(s.grad is not None for s in student)
    assert all(t.grad is None for t in teacher)


def test_center_moves_towards_the_mean_of_both_global_crops():
    center = torch.tensor([[1.0, 0.0]])
    teacher = [torch.tensor([[2.0, 4.0], [0.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 4.0]])]
    update_center_(center, teacher, momentum=0.9)
    # mean over the 4 rows: (1, 2); 0.9·(1, 0) + 0.1·(1, 2) = (1, 0.2)
    torch.testing.assert_close(center, torch.tensor([[1.0, 0.2]]))


@pytest.mark.parametrize(
    ("epoch", "expected"), [(0, 0.04), (1, 0.055), (2, 0.07), (3, 0.07), (30, 0.07)]
)
def test_teacher_temperature_warms_up_linearly(epoch, expected):
    assert teacher_temp_at(epoch, 0.04, 0.07, warmup_epochs=3) == pytest.approx(expected)


def test_teacher_temperature_without_warm_up():
    assert teacher_temp_at(0, 0.04, 0.07, warmup_epochs=0) == 0.07


# --- heads and model ----------------------------------------------------------------------


def test_last_layer_rows_have_norm_one_or_a_learnt_norm():
    fixed = WeightNormLinear(4, 3, learn_norm=False)
    x = torch.eye(4)
    # With unit inputs the outputs are the weight's columns; every row of the weight has norm 1.
    assert torch.allclose(fixed(x).T.norm(dim=1), torch.ones(3))
    learnt = WeightNormLinear(4, 3, learn_norm=True)
    with torch.no_grad():
        learnt.weight_g.fill_(2.0)
    assert torch.allclose(learnt(x).T.norm(dim=1), torch.full((3,), 2.0))
    assert [n for n, _ in fixed.named_parameters()] == ["weight_v"]


def test_head_shapes():
    head = DINOHead(
        8, 10, hidden_dim=16, bottleneck_dim=6, num_layers=3, use_bn=True, norm_last_layer=True
    )
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 16), (16, 16), (16, 6)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head.mlp) == 2
    assert head(torch.randn(3, 8)).shape == (3, 10)


def test_multicrop_forward_runs_each_resolution_once():
    calls = []

    class Recorder(TinyBackbone):
        def forward(self, x):
            calls.append(tuple(x.shape))
            return super().forward(x)

    outputs = multicrop_forward(Recorder(), nn.Identity(), multicrop_views(local=3))
    assert calls == [(8, 3, 16, 16), (12, 3, 8, 8)]
    assert [tuple(o.shape) for o in outputs] == [(4, 8)] * 5


def test_teacher_sees_global_crops_only(model):
    student, teacher = model(multicrop_views(local=3))
    assert len(student) == 5 and len(teacher) == 2
    assert all(s.shape == (4, 10) for s in student + teacher)


def test_compute_loss_matches_the_pieces_and_updates_the_centre(run, model):
    views = multicrop_views()
    torch.manual_seed(3)
    out = run.ssl_compute_loss(model=model, views=views, step=0)
    assert out["teacher_temp"].item() == pytest.approx(0.04)
    assert out["loss"].shape == () and torch.isfinite(out["loss"])
    assert not torch.equal(model.center, torch.zeros(1, 10))
    assert "center" in model.state_dict()


@pytest.mark.parametrize(
    "shapes", [[(16, 16)], [(16, 16), (8, 8), (8, 8)]], ids=["one view", "globals differ"]
)
def test_compute_loss_refuses_views_without_two_global_crops(run, model, shapes):
    views = [torch.randn(4, 3, *s) for s in shapes]
    with pytest.raises(ValueError, match="2 global views of one size"):
        run.ssl_compute_loss(model=model, views=views, step=0)


def test_two_views_without_local_crops_work(run, model):
    out = run.ssl_compute_loss(model=model, views=multicrop_views(local=0), step=0)
    assert torch.isfinite(out["loss"])


def test_last_layer_frozen_for_the_first_epoch(run, model):
    class Run:
        steps_per_epoch = 3

    run.ssl_run_start(run=Run())
    out = run.ssl_compute_loss(model=model, views=multicrop_views(), step=2)
    out["loss"].backward()
    last = model.student_head.last_layer.weight_v
    # Zero, not none: data-parallel training wants a gradient for every trainable parameter.
    assert last.grad is not None and torch.equal(last.grad, torch.zeros_like(last))
    assert all(p.grad.abs().sum() > 0 for p in model.student_head.mlp.parameters())
    model.zero_grad(set_to_none=True)
    out = run.ssl_compute_loss(model=model, views=multicrop_views(), step=3)
    out["loss"].backward()
    assert last.grad.abs().sum() > 0


def test_frozen_last_layer_keeps_its_output_under_adamw(run, model):
    model.student_head.last_layer.frozen = True
    x = torch.randn(3, 6)
    before = model.student_head.last_layer(x).detach()
    optimizer = torch.optim.AdamW(model.student_head.last_layer.parameters(), weight_decay=0.5)
    model.student_head.last_layer(x).sum().backward()
    optimizer.step()
    torch.testing.assert_close(model.student_head.last_layer(x), before)


def test_loss_reaches_the_model_through_a_data_parallel_wrapper(run, model):
    class Wrapper(nn.Module):
        """Stands for DistributedDataParallel: forwards calls, holds the model as ``module``."""

        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *args):
            return self.module(*args)

    out = run.ssl_compute_loss(model=Wrapper(model), views=multicrop_views(), step=0)
    assert torch.isfinite(out["loss"])
    assert not torch.equal(model.center, torch.zeros(1, 10))


def test_steps_per_epoch_from_the_first_target_update_on_every_process(config, model):
    config.trainer = {"epochs": 4, "max_steps": 0}
    run = plugin.make_run(config)
    assert run.epoch_of(7) == 0  # not known yet
    run.ssl_update_target(model=model, step=0, total_steps=12)
    assert run.steps_per_epoch == 3 and run.epoch_of(7) == 2


def test_steps_per_epoch_unknown_when_max_steps_cuts_the_run(config, model):
    config.trainer = {"epochs": 4, "max_steps": 5}
    run = plugin.make_run(config)
    run.ssl_update_target(model=model, step=0, total_steps=5)
    assert run.steps_per_epoch is None


def test_teacher_starts_equal_takes_no_gradient_and_follows_by_ema(run, model):
    for s, t in zip(model.online_parameters(), model.target_parameters(), strict=True):
        assert s is not t and torch.equal(s, t) and not t.requires_grad
    with torch.no_grad():
        for param in model.online_parameters():
            param.add_(torch.randn_like(param))
    student = [p.detach().clone() for p in model.online_parameters()]
    teacher = [p.detach().clone() for p in model.target_parameters()]
    out = run.ssl_update_target(model=model, step=0, total_steps=4)
    assert out == {"momentum_teacher": pytest.approx(MOMENTUM)}
    for before, theta, after in zip(teacher, student, model.target_parameters(), strict=True):
        torch.testing.assert_close(after, before + (1 - MOMENTUM) * (theta - before))


# --- options and registration -------------------------------------------------------------


def test_options_default_to_the_reference():
    options = DINOOptions.from_config(OmegaConf.create({}))
    assert (options.out_dim, options.hidden_dim, options.bottleneck_dim) == (65536, 2048, 256)
    assert (options.student_temp, options.teacher_temp, options.center_momentum) == (
        0.1,
        0.04,
        0.9,
    )
    assert options.momentum_teacher == 0.996 and options.norm_last_layer


def test_registers_dino_with_multicrop_views_and_adamw():
    registry = Registry()
    plugin.ssl_register_methods(register=registry.registrar("method", "dino"))
    defaults = registry.get("method", "dino").defaults
    assert defaults["augment.name"] == "multicrop"
    assert (defaults["optim.name"], defaults["optim.lr"]) == ("adamw", 5e-4)
