"""The DINO plugin: loss, centre and teacher temperature by hand, the multi-crop forward, the
teacher and the core's update of it, the frozen last layer's parameter group, gradient
clipping and the weight-decay recipe, registration. A real run's schedules are checked in
``test_method_groups.py``."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from ssl_dino import DINO, RECIPE, DINOOptions, ssl_register_methods
from ssl_dino import model as dino_model
from ssl_dino.model import DINOHead, WeightNormLinear, dino_loss, multicrop_forward, teacher_temp_at
from torch import nn

from ssl_core import EMA, ConfigError, StepInfo
from ssl_core.config.groups import OptimOptions
from ssl_core.config.resolve import check_views
from ssl_core.methods.param_groups import check_groups
from ssl_core.methods.targets import update_declared_targets
from ssl_core.registry import Registry
from ssl_core.training.optim import build_optimizer, clip_gradients, drop_frozen_gradients

sys.path.insert(0, str(Path(__file__).parent))
from wrapped import loss_through_wrapper  # noqa: E402

MOMENTUM = 0.996
OPTIONS = DINOOptions(
    out_dim=10,
    hidden_dim=16,
    bottleneck_dim=6,
    momentum_teacher=MOMENTUM,
    freeze_last_layer_epochs=1,
)


class TinyBackbone(nn.Module):
    """Any image size to 8 features: a conv and a global pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.num_features = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


def with_options(**changes) -> DINOOptions:
    return DINOOptions(**{**vars(OPTIONS), **changes})


@pytest.fixture
def run() -> DINO:
    return DINO(OPTIONS)


@pytest.fixture
def model(run):
    torch.manual_seed(0)
    return run.ssl_build_heads(backbone=TinyBackbone()).train()


def multicrop_views(local: int = 2) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(4, 3, 16, 16, generator=generator) for _ in range(2)] + [
        torch.randn(4, 3, 8, 8, generator=generator) for _ in range(local)
    ]


def info(step: int = 0, epoch: int = 0) -> StepInfo:
    return StepInfo(step=step, epoch=epoch, steps_per_epoch=3, total_steps=30)


def student_parameters(model) -> list[nn.Parameter]:
    return [*model.student_backbone.parameters(), *model.student_head.parameters()]


def teacher_parameters(model) -> list[nn.Parameter]:
    return [*model.teacher_backbone.parameters(), *model.teacher_head.parameters()]


# --- loss and centre ----------------------------------------------------------------------


def entropy(p: list[float]) -> float:
    return -sum(x * math.log(x) for x in p)


def test_dino_loss_by_hand_two_global_crops():
    """τ = 1 and no centre: teacher 1 is softmax(ln 3, 0) = (3/4, 1/4), teacher 2 uniform;
    student 1 uniform, student 2 softmax(ln 3, 0). Pairs (t1, s2) and (t2, s1):
    H((3/4, 1/4), (3/4, 1/4)) = entropy, H(uniform, uniform) = ln 2."""
    ln3 = math.log(3.0)
    teacher = [torch.tensor([[ln3, 0.0]]), torch.tensor([[0.0, 0.0]])]
    student = [torch.tensor([[0.0, 0.0]]), torch.tensor([[ln3, 0.0]])]
    loss = dino_loss(student, teacher, torch.zeros(1, 2), 1.0, 1.0)
    assert loss.item() == pytest.approx((entropy([0.75, 0.25]) + math.log(2)) / 2)


def test_dino_loss_by_hand_with_a_local_crop_centre_and_temperatures():
    """Teacher temperature 0.5 and centre (ln 3 / 2, 0): teacher 1 logits (ln 3, 0) become
    (ln 3 − ln 3/2, 0)/0.5 = (ln 3, 0) → (3/4, 1/4); teacher 2 (ln 3/2, 0) → uniform.
    Student temperature 2 on student logits (2 ln 3, 0) → (3/4, 1/4); zeros → uniform."""
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
    """Stop-gradient on the teacher; every student crop gets a gradient."""
    student = [torch.randn(3, 5, requires_grad=True) for _ in range(3)]
    teacher = [torch.randn(3, 5, requires_grad=True) for _ in range(2)]
    dino_loss(student, teacher, torch.zeros(1, 5), 0.1, 0.04).backward()
    assert all(s.grad is not None for s in student)
    assert all(t.grad is None for t in teacher)


def test_center_moves_towards_the_mean_of_both_global_crops():
    """c ← m·c + (1 − m)·mean over both global crops' rows (eq. 4)."""
    model = DINO(with_options(out_dim=2)).ssl_build_heads(backbone=TinyBackbone())
    model.center.copy_(torch.tensor([[1.0, 0.0]]))
    teacher = [torch.tensor([[2.0, 4.0], [0.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 4.0]])]
    model.update_center(teacher, momentum=0.9)
    # mean over the 4 rows: (1, 2); 0.9·(1, 0) + 0.1·(1, 2) = (1, 0.2)
    torch.testing.assert_close(model.center, torch.tensor([[1.0, 0.2]]))


def test_center_averages_the_teacher_outputs_of_every_process(monkeypatch):
    """With another process's mean gathered in, the centre moves towards the global mean:
    local rows (2, 4), (2, 0); other rows (0, 0), (0, 4), whose mean (0, 2) is what that
    process sends → mean (1, 2); c = 0 → (0.1, 0.2)."""
    model = DINO(with_options(out_dim=2)).ssl_build_heads(backbone=TinyBackbone())
    other = torch.tensor([[0.0, 2.0]])
    monkeypatch.setattr(dino_model, "gather", lambda t: torch.cat([other, t]))
    model.update_center([torch.tensor([[2.0, 4.0]]), torch.tensor([[2.0, 0.0]])], momentum=0.9)
    torch.testing.assert_close(model.center, torch.tensor([[0.1, 0.2]]))


@pytest.mark.parametrize(
    ("epoch", "expected"), [(0, 0.04), (1, 0.055), (2, 0.07), (3, 0.07), (30, 0.07)]
)
def test_teacher_temperature_warms_up_linearly(epoch, expected):
    """np.linspace(0.04, 0.07, 3): 0.04, 0.055, 0.07, then 0.07."""
    assert teacher_temp_at(epoch, 0.04, 0.07, warmup_epochs=3) == pytest.approx(expected)


def test_teacher_temperature_without_warm_up():
    """No warm-up epochs: the final temperature from the start."""
    assert teacher_temp_at(0, 0.04, 0.07, warmup_epochs=0) == 0.07


# Warm-up 0.04 → 0.07 over 3 epochs; the step (100, epoch 33 at 3 steps an epoch) must not count.
@pytest.mark.parametrize(("epoch", "temp"), [(0, 0.04), (1, 0.055), (2, 0.07), (5, 0.07)])
def test_loss_uses_the_teacher_temperature_of_info_epoch(epoch, temp):
    """The hook takes the epoch from ``info.epoch`` (no guessing from steps), logs it as
    ``teacher_temp`` and sharpens the teacher with it."""
    run = DINO(with_options(teacher_temp=0.07, warmup_teacher_temp_epochs=3))
    torch.manual_seed(0)
    model = run.ssl_build_heads(backbone=TinyBackbone()).train()
    views = multicrop_views()
    with torch.no_grad():
        model.center.normal_()
    center = model.center.clone()
    out = run.ssl_compute_loss(model=model, views=views, info=info(step=100, epoch=epoch))
    assert out["teacher_temp"].item() == pytest.approx(temp)
    student, teacher = model(views)
    torch.testing.assert_close(out["loss"], dino_loss(student, teacher, center, 0.1, temp))
    other = 0.07 if temp != 0.07 else 0.04
    assert not torch.allclose(out["loss"], dino_loss(student, teacher, center, 0.1, other))


# --- heads and model ----------------------------------------------------------------------


def test_last_layer_rows_have_norm_one_or_a_learnt_norm():
    """Without ``learn_norm`` every row of the weight has norm 1; with it, norm g."""
    fixed = WeightNormLinear(4, 3, learn_norm=False)
    x = torch.eye(4)
    # With unit inputs the outputs are the weight's columns; every row of the weight has norm 1.
    assert torch.allclose(fixed(x).T.norm(dim=1), torch.ones(3))
    learnt = WeightNormLinear(4, 3, learn_norm=True)
    with torch.no_grad():
        learnt.weight_g.fill_(2.0)
    assert torch.allclose(learnt(x).T.norm(dim=1), torch.full((3,), 2.0))
    assert [n for n, _ in fixed.named_parameters()] == ["weight_v"]
    assert [n for n, _ in learnt.named_parameters()] == ["weight_v", "weight_g"]


def test_head_shapes():
    """3 linear layers 8 → 16 → 16 → 6, BatchNorm on the hidden ones when asked, K = 10."""
    options = with_options(head_layers=3, use_bn_in_head=True, norm_last_layer=True)
    head = DINOHead(8, options)
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 16), (16, 16), (16, 6)]
    assert all(m.bias is not None for m in linears)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head.mlp) == 2
    assert sum(isinstance(m, nn.GELU) for m in head.mlp) == 2
    assert head(torch.randn(3, 8)).shape == (3, 10)


def test_head_state_dict_keys_are_unchanged(model):
    """Linear → GELU → Linear → GELU → Linear, then the prototypes: the previous keys."""
    for head in ("student_head", "teacher_head"):
        keys = [k for k in model.state_dict() if k.startswith(f"{head}.")]
        mlp = [f"{head}.mlp.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")]
        assert keys == [*mlp, f"{head}.last_layer.weight_v"]
    assert "center" in model.state_dict()


def test_multicrop_forward_runs_each_resolution_once():
    """Consecutive views of one size share a backbone call: the 2 globals, then the 3 locals;
    the outputs come back one per view, in order."""
    calls = []

    class Recorder(TinyBackbone):
        def forward(self, x):
            calls.append(tuple(x.shape))
            return super().forward(x)

    views = multicrop_views(local=3)
    backbone = Recorder()
    outputs = multicrop_forward(backbone, nn.Identity(), views)
    assert calls == [(8, 3, 16, 16), (12, 3, 8, 8)]
    assert [tuple(o.shape) for o in outputs] == [(4, 8)] * 5
    for view, output in zip(views, outputs, strict=True):
        torch.testing.assert_close(output, TinyBackbone.forward(backbone, view))


def test_teacher_sees_global_crops_only(model):
    """Student logits for all 5 crops, teacher logits for the 2 global ones."""
    student, teacher = model(multicrop_views(local=3))
    assert len(student) == 5 and len(teacher) == 2
    assert all(s.shape == (4, 10) for s in student + teacher)


def test_compute_loss_matches_the_pieces_and_updates_the_centre(run, model):
    """Loss of the model's outputs at the teacher temperature 0.04, then the centre moves to
    0.9·0 + 0.1·(mean of the teacher logits); the centre is checkpointed."""
    views = multicrop_views()
    out = run.ssl_compute_loss(model=model, views=views, info=info())
    student, teacher = model(views)
    assert out["teacher_temp"].item() == pytest.approx(0.04)
    assert out["loss"].shape == ()
    torch.testing.assert_close(
        out["loss"], dino_loss(student, teacher, torch.zeros(1, 10), 0.1, 0.04)
    )
    torch.testing.assert_close(model.center, 0.1 * torch.cat(teacher).mean(dim=0, keepdim=True))
    assert "center" in model.state_dict()


def test_two_views_without_local_crops_work(run, model):
    """Two global crops and no local one: a finite loss."""
    out = run.ssl_compute_loss(model=model, views=multicrop_views(local=0), info=info())
    assert torch.isfinite(out["loss"])


def test_compute_loss_calls_the_model_once_through_a_data_parallel_wrapper(run, model):
    """The hook gets the model itself (no ``.module`` unwrapping): its one call
    ``model(views)`` goes through the data-parallel wrapper, and the centre of the model moves."""
    out, calls = loss_through_wrapper(run, model, multicrop_views(), info=info())
    assert calls == [4]
    assert torch.isfinite(out["loss"])
    assert not torch.equal(model.center, torch.zeros(1, 10))


# --- the teacher, updated by the core -----------------------------------------------------


def test_teacher_starts_equal_and_takes_no_gradient(run, model):
    """The teacher is a copy of the student without gradient; the loss sends it none."""
    for s, t in zip(student_parameters(model), teacher_parameters(model), strict=True):
        assert s is not t and torch.equal(s, t) and not t.requires_grad
    run.ssl_compute_loss(model=model, views=multicrop_views(), info=info())["loss"].backward()
    assert all(p.grad is None for p in teacher_parameters(model))


def test_model_declares_its_teacher_for_the_core(model):
    """Declared, not updated by the method: logged as ``momentum_teacher``."""
    assert isinstance(model.ema, EMA)
    assert model.ema.pairs == {
        "teacher_backbone": "student_backbone",
        "teacher_head": "student_head",
    }
    assert (model.ema.tau_base, model.ema.metric) == (MOMENTUM, "momentum_teacher")
    assert not hasattr(DINO, "ssl_update_target")


# λ = 1 − (1 − 0.996)·(cos(πk/K) + 1)/2: k = 0 → 0.996; k = K/2 → 0.998
@pytest.mark.parametrize(("step", "lam"), [(0, 0.996), (15, 0.998)])
def test_core_update_moves_the_teacher_by_one_minus_lambda(model, step, lam):
    """After an optimizer step the core moves θ_t ← θ_t + (1 − λ)·(θ_s − θ_t), logs λ, and
    leaves the student and the centre alone."""
    torch.manual_seed(2)
    with torch.no_grad():
        for param in student_parameters(model):
            param.add_(torch.randn_like(param))
        model.center.fill_(3.0)
    student = [p.detach().clone() for p in student_parameters(model)]
    teacher = [p.detach().clone() for p in teacher_parameters(model)]
    out = update_declared_targets(model, info(step=step))
    assert out == {"momentum_teacher": pytest.approx(lam, abs=1e-12)}
    for before, theta, after in zip(teacher, student, teacher_parameters(model), strict=True):
        torch.testing.assert_close(after, before + (1 - lam) * (theta - before))
    for theta, now in zip(student, student_parameters(model), strict=True):
        torch.testing.assert_close(now, theta, rtol=0, atol=0)
    assert torch.equal(model.center, torch.full((1, 10), 3.0))


# --- the last layer's group, clipping and the recipe --------------------------------------


def test_last_layer_is_a_group_frozen_for_freeze_last_layer_epochs(run, model):
    """The prototypes form the group ``student_head.last_layer`` with ``frozen_epochs`` from
    the options; every other trainable parameter is in a group that is never frozen."""
    groups = run.ssl_param_groups(model=model)
    check_groups(model, groups, "dino")
    by_name = {g.name: g for g in groups}
    assert set(by_name) == {"default", "default.no_decay", "student_head.last_layer"}
    last = by_name["student_head.last_layer"]
    assert [id(p) for p in last.params] == [id(model.student_head.last_layer.weight_v)]
    assert last.frozen_epochs == 1 and last.weight_decay is None
    assert by_name["default"].frozen_epochs == by_name["default.no_decay"].frozen_epochs == 0
    longer = DINO(with_options(freeze_last_layer_epochs=3)).ssl_param_groups(model=model)
    assert {g.name: g.frozen_epochs for g in longer}["student_head.last_layer"] == 3


def test_learnt_norm_joins_the_frozen_group():
    """With ``norm_last_layer=false`` the norm g is a prototype parameter too, frozen alike."""
    run = DINO(with_options(norm_last_layer=False))
    model = run.ssl_build_heads(backbone=TinyBackbone())
    groups = {g.name: g for g in run.ssl_param_groups(model=model)}
    last = model.student_head.last_layer
    frozen = [id(p) for name, g in groups.items() if g.frozen_epochs for p in g.params]
    assert sorted(frozen) == sorted([id(last.weight_v), id(last.weight_g)])


def adamw(groups, weight_decay: float = 0.5):
    options = OmegaConf.structured(OptimOptions(name="adamw", lr=0.1, weight_decay=weight_decay))
    return build_optimizer(groups, options, batch_size=256)


def test_frozen_last_layer_keeps_its_output_under_adamw_then_trains(run, model):
    """In epoch 0 the core drops the prototypes' gradients before the step, so AdamW (weight
    decay included) leaves them as they were while the rest moves; in epoch 1 they train."""
    optimizer = adamw(run.ssl_param_groups(model=model))
    last, mlp = model.student_head.last_layer.weight_v, model.student_head.mlp[0].weight
    x = torch.randn(3, 6)
    output = model.student_head.last_layer(x).detach()
    last_before, mlp_before = last.detach().clone(), mlp.detach().clone()

    run.ssl_compute_loss(model=model, views=multicrop_views(), info=info())["loss"].backward()
    drop_frozen_gradients(optimizer, epoch=0)
    optimizer.step()
    torch.testing.assert_close(model.student_head.last_layer(x), output, rtol=0, atol=0)
    assert torch.equal(last, last_before)
    assert not torch.equal(mlp, mlp_before)

    optimizer.zero_grad()
    run.ssl_compute_loss(model=model, views=multicrop_views(), info=info(3, 1))["loss"].backward()
    drop_frozen_gradients(optimizer, epoch=1)
    optimizer.step()
    assert not torch.equal(last, last_before)


def test_per_parameter_clipping_by_hand():
    """DINO clips each parameter's gradient to norm 3: (2, 4, 4) of norm 6 becomes (1, 2, 2)
    of norm 3, (0.6, 0.8) of norm 1 is left exactly as it is. The global norm √37 would have
    scaled both."""
    big, small = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([{"params": [big]}, {"params": [small]}], lr=0.1)
    big.grad, small.grad = torch.tensor([2.0, 4.0, 4.0]), torch.tensor([0.6, 0.8])
    clip_gradients(optimizer, 3.0, per_param=True)
    torch.testing.assert_close(big.grad, torch.tensor([1.0, 2.0, 2.0]))
    assert big.grad.norm().item() == pytest.approx(3.0)
    assert torch.equal(small.grad, torch.tensor([0.6, 0.8]))

    big.grad, small.grad = torch.tensor([2.0, 4.0, 4.0]), torch.tensor([0.6, 0.8])
    clip_gradients(optimizer, 3.0, per_param=False)
    scale = 3.0 / math.sqrt(37.0)
    torch.testing.assert_close(small.grad, torch.tensor([0.6, 0.8]) * scale, rtol=1e-5, atol=1e-6)


def test_recipe_schedules_weight_decay_and_clips_per_parameter():
    """The reference's optimizer: AdamW lr 5e-4, weight decay 0.04 rising to 0.4, gradients
    clipped to norm 3 per parameter, 10 warm-up epochs, multi-crop views."""
    assert RECIPE["optim.name"] == "adamw" and RECIPE["optim.lr"] == 5e-4
    assert (RECIPE["optim.weight_decay"], RECIPE["optim.weight_decay_end"]) == (0.04, 0.4)
    assert (RECIPE["optim.clip_grad"], RECIPE["optim.clip_grad_per_param"]) == (3.0, True)
    assert RECIPE["optim.warmup_epochs"] == 10.0
    assert RECIPE["augment.name"] == "multicrop"


# --- options and registration -------------------------------------------------------------


def test_options_default_to_the_reference():
    """K = 65536, 2048/256, τ_s 0.1, τ_t 0.04, centre 0.9, λ 0.996, last layer frozen 1 epoch."""
    options = DINOOptions()
    assert (options.out_dim, options.hidden_dim, options.bottleneck_dim) == (65536, 2048, 256)
    assert (options.student_temp, options.teacher_temp, options.center_momentum) == (
        0.1,
        0.04,
        0.9,
    )
    assert options.momentum_teacher == 0.996 and options.norm_last_layer
    assert options.freeze_last_layer_epochs == 1


def registered() -> Registry:
    registry = Registry()
    ssl_register_methods(register=registry.registrar("method", "dino"))
    return registry


def test_registers_dino_with_multicrop_views_and_adamw():
    """``method=dino``: 2 views or more (globals, then locals); the recipe as defaults."""
    component = registered().get("method", "dino")
    assert component.options is DINOOptions
    assert component.views == (2, None)
    assert dict(component.defaults) == RECIPE
    assert component.defaults["augment.name"] == "multicrop"
    assert (component.defaults["optim.name"], component.defaults["optim.lr"]) == ("adamw", 5e-4)
    assert isinstance(component.factory(OPTIONS), DINO)


def test_view_count_is_checked_against_the_generator_before_the_run():
    """One view is refused by the config (DINO needs 2 global crops); 2 or 10 are taken."""
    registry = registered()
    register = registry.registrar("view_generator", "t")
    for made in (1, 2, 10):
        register(f"gen{made}", object, views=made)

    class Selection:
        method = registry.get("method", "dino")
        view_generator = registry.get("view_generator", "gen1")

    with pytest.raises(ConfigError, match="takes 2 or more views.*makes 1"):
        check_views(Selection, None)
    for made in (2, 10):
        Selection.view_generator = registry.get("view_generator", f"gen{made}")
        check_views(Selection, None)


def test_one_warmup_epoch_of_the_teacher_temperature_is_the_warmup_value():
    """``np.linspace(0.04, 0.07, 1)`` is ``[0.04]``: one warm-up epoch keeps the warm-up
    temperature, and the next epoch has the final one."""
    from ssl_dino.model import teacher_temp_at

    assert teacher_temp_at(0, 0.04, 0.07, 1) == 0.04
    assert teacher_temp_at(1, 0.04, 0.07, 1) == 0.07
