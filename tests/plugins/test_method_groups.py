"""Methods' own optimization rules in real runs of the engine: SimSiam's fixed predictor
learning rate, DINO's weight-decay schedule, frozen last layer, teacher temperature and teacher
EMA, its clipping recipe.

Each run is tiny (``test_resnet`` on 16-pixel synthetic images, batches of 4, heads 16 wide,
4 steps an epoch) and is observed through a plugin implementing ``ssl_run_start`` and
``ssl_step_end``, handed to the engine with ``get_plugins(extra=...)``. The expected values are
worked out by hand from the formulas, not from the core's functions, except where a test says
it compares with :func:`~ssl_core.training.optim.lr_at`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from ssl_core import hookimpl
from ssl_core.config import build_config
from ssl_core.plugins import get_plugins
from ssl_core.training.engine import train
from ssl_core.training.optim import lr_at

#: Every run: 16 training images of 16 px in batches of 4 (4 optimizer steps an epoch).
TINY = [
    "backbone=test_resnet",
    "data=synthetic",
    "data.num_samples=20",
    "data.image_size=16",
    "trainer.batch_size=4",
    "trainer.num_workers=0",
    "trainer.device=cpu",
    "trainer.channels_last=false",
    "trainer.checkpoint_every=0",
    "eval.knn=false",
    "eval.knn_every=0",
    "tracking.enabled=false",
]
STEPS_PER_EPOCH = 4

Snapshot = Callable[[torch.nn.Module], dict[str, torch.Tensor]]


class Recorder:
    """Records the run's config and optimizer groups at the start, then each step's metrics
    and, before the first step and after each, copies of the tensors ``snapshot`` picks."""

    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self.snapshot = snapshot or (lambda model: {})
        self.config: Any = None
        self.groups: dict[str, dict[str, Any]] = {}
        self.model: torch.nn.Module | None = None
        self.metrics: list[dict[str, float]] = []
        self.tensors: list[dict[str, torch.Tensor]] = []

    def _copy(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.snapshot(model).items()}

    @hookimpl
    def ssl_run_start(self, run: Any) -> None:
        self.config, self.model = run.config, run.model
        for group in run.optimizer.param_groups:
            self.groups[group["name"]] = {
                "params": {id(p) for p in group["params"]},
                "base_lr": group["base_lr"],
                "fixed_lr": group["fixed_lr"],
                "frozen_epochs": group["frozen_epochs"],
            }
        self.tensors.append(self._copy(run.model))

    @hookimpl
    def ssl_step_end(self, run: Any, step: int, metrics: dict[str, float]) -> None:
        assert step == len(self.metrics) + 1
        self.metrics.append(dict(metrics))
        self.tensors.append(self._copy(run.model))


def run_engine(folder: Path, args: list[str], snapshot: Snapshot | None = None) -> Recorder:
    """Train ``TINY + args`` to the end in this process; what the recorder saw."""
    recorder = Recorder(snapshot)
    plugins = get_plugins(extra=[("recorder", recorder)])
    config, selection = build_config([*TINY, *args, f"output_dir={folder}"], plugins.registry)
    # One thread: on a small, shared CPU, idle OpenMP threads spinning cost more than they give.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(config, selection, plugins)
    finally:
        torch.set_num_threads(threads)
    return recorder


# --- SimSiam: the predictor's learning rate ----------------------------------------------

SIMSIAM = [
    "method=simsiam",
    "augment=kornia",
    "simsiam.proj_hidden_dim=16",
    "simsiam.proj_dim=16",
    "simsiam.pred_hidden_dim=8",
    "trainer.epochs=3",  # K = 12 steps
    "optim.warmup_epochs=0.5",  # W = 2 steps
]
SIMSIAM_STEPS, SIMSIAM_WARMUP = 12, 2
#: optim.lr × batch/256 with the recipe's optim.lr = 0.05 and batches of 4.
SIMSIAM_BASE_LR = 0.05 * 4 / 256


@pytest.fixture(scope="module")
def simsiam_fixed(tmp_path_factory) -> Recorder:
    return run_engine(tmp_path_factory.mktemp("simsiam_fixed"), SIMSIAM)


@pytest.fixture(scope="module")
def simsiam_decayed(tmp_path_factory) -> Recorder:
    folder = tmp_path_factory.mktemp("simsiam_decayed")
    return run_engine(folder, [*SIMSIAM, "simsiam.fixed_predictor_lr=false"])


def test_simsiam_predictor_lr_stays_at_its_base_value(simsiam_fixed):
    """Chen & He §4.1: at every step the predictor's groups run at optim.lr × batch/256
    = 0.05 × 4/256, while the other groups warm up over 2 steps and then decay along the
    cosine (hand values at steps 0, 1, 7 and 11, all of them against ``lr_at``)."""
    rec = simsiam_fixed
    assert rec.config.optim.lr == 0.05 and rec.config.optim.name == "sgd"
    assert len(rec.metrics) == SIMSIAM_STEPS
    base = SIMSIAM_BASE_LR
    for k, metrics in enumerate(rec.metrics):
        assert metrics["lr/predictor"] == pytest.approx(base, rel=1e-12), k
        expected = lr_at(k, SIMSIAM_STEPS, SIMSIAM_WARMUP, base)
        assert metrics["lr/default"] == pytest.approx(expected, rel=1e-12), k
        assert metrics["lr"] == metrics["lr/default"]
        # the reference decays biases and BatchNorm parameters too: one group each
        assert not any(key.endswith(".no_decay") for key in metrics), k
    default = [m["lr/default"] for m in rec.metrics]
    # warm-up (k + 1)/W; then base·(1 + cos(π(k − W)/(K − W)))/2
    assert default[0] == pytest.approx(base / 2)
    assert default[1] == pytest.approx(base)
    assert default[7] == pytest.approx(base / 2)  # (7 − 2)/10 = half-way down the cosine
    assert default[11] == pytest.approx(base * (1 + math.cos(0.9 * math.pi)) / 2)
    assert default[11] < base / 10


def test_simsiam_predictor_group_holds_the_predictor(simsiam_fixed):
    """The optimizer's ``predictor`` groups are exactly the predictor's parameters, marked
    ``fixed_lr``; every group starts from the same base rate."""
    rec = simsiam_fixed
    predictor = {id(p) for p in rec.model.predictor.parameters()}
    assert rec.groups["predictor"]["params"] == predictor
    assert rec.groups["predictor"]["fixed_lr"] and not rec.groups["default"]["fixed_lr"]
    assert all(g["base_lr"] == pytest.approx(SIMSIAM_BASE_LR) for g in rec.groups.values())


def test_simsiam_predictor_lr_decays_without_fixed_predictor_lr(simsiam_decayed):
    """``simsiam.fixed_predictor_lr=false``: no predictor group; every group, the predictor's
    included, follows the warm-up and cosine."""
    rec = simsiam_decayed
    assert set(rec.groups) == {"default"}
    predictor = {id(p) for p in rec.model.predictor.parameters()}
    assert predictor <= rec.groups["default"]["params"]
    for k, metrics in enumerate(rec.metrics):
        assert not any(key.startswith("lr/predictor") for key in metrics)
        expected = lr_at(k, SIMSIAM_STEPS, SIMSIAM_WARMUP, SIMSIAM_BASE_LR)
        assert metrics["lr/default"] == pytest.approx(expected, rel=1e-12)
    assert rec.metrics[-1]["lr"] < SIMSIAM_BASE_LR / 10


# --- DINO: weight decay, frozen last layer, teacher ---------------------------------------

DINO = [
    "method=dino",  # its recipe: multicrop views, AdamW, wd 0.04 → 0.4, clipping 3 per param
    "augment.local_crops_number=2",
    "dino.out_dim=16",
    "dino.hidden_dim=16",
    "dino.bottleneck_dim=8",
    "dino.teacher_temp=0.07",
    "dino.warmup_teacher_temp_epochs=3",  # 0.04, 0.055, 0.07 by epoch
    "trainer.epochs=2",  # K = 8 steps; the last layer is frozen in epoch 0 (steps 0–3)
    "optim.warmup_epochs=0",
]
DINO_STEPS = 8


def dino_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        "last": model.student_head.last_layer.weight_v,
        "mlp": model.student_head.mlp[0].weight,
        "student": next(model.student_backbone.parameters()),
        "teacher": next(model.teacher_backbone.parameters()),
        "teacher_last": model.teacher_head.last_layer.weight_v,
    }


@pytest.fixture(scope="module")
def dino(tmp_path_factory) -> Recorder:
    return run_engine(tmp_path_factory.mktemp("dino"), DINO, dino_tensors)


def test_dino_run_takes_the_recipe_for_the_optimizer(dino):
    """A ``method=dino`` run, with none of these keys given, gets AdamW, weight decay 0.04
    rising to 0.4, and gradients clipped to norm 3 parameter by parameter."""
    optim = dino.config.optim
    assert (optim.name, optim.weight_decay, optim.weight_decay_end) == ("adamw", 0.04, 0.4)
    assert (optim.clip_grad, optim.clip_grad_per_param) == (3.0, True)
    assert dino.config.augment.name == "multicrop"
    assert len(dino.metrics) == DINO_STEPS


def test_dino_weight_decay_follows_the_cosine_from_0_04_to_0_4(dino):
    """wd(k) = 0.4 + (0.04 − 0.4)·(1 + cos(πk/K))/2 at step k of K = 8 on the regular groups
    (the prototypes' included); biases and norms keep 0."""
    for k, metrics in enumerate(dino.metrics):
        expected = 0.4 + (0.04 - 0.4) * (1 + math.cos(math.pi * k / DINO_STEPS)) / 2
        assert metrics["wd/default"] == pytest.approx(expected, rel=1e-12), k
        assert metrics["wd/student_head.last_layer"] == pytest.approx(expected, rel=1e-12), k
        assert metrics["wd/default.no_decay"] == 0.0, k
    assert dino.metrics[0]["wd/default"] == pytest.approx(0.04)
    assert dino.metrics[4]["wd/default"] == pytest.approx(0.22)  # half-way: (0.04 + 0.4)/2
    # k = 6: cos(3π/4) = −√½
    assert dino.metrics[6]["wd/default"] == pytest.approx(0.4 - 0.36 * (1 - math.sqrt(0.5)) / 2)


def test_dino_last_layer_is_frozen_in_the_first_epoch_only(dino):
    """Steps 1–4 (epoch 0) leave the prototypes exactly as initialized, weight decay included,
    while the rest of the head moves at every step; from step 5 (epoch 1) they train too."""
    assert dino.groups["student_head.last_layer"]["frozen_epochs"] == 1
    snapshots = dino.tensors  # [before step 1, after step 1, ..., after step 8]
    start = snapshots[0]
    for step in range(1, STEPS_PER_EPOCH + 1):
        assert torch.equal(snapshots[step]["last"], start["last"]), step
        assert torch.equal(snapshots[step]["teacher_last"], start["last"]), step
        assert not torch.equal(snapshots[step]["mlp"], snapshots[step - 1]["mlp"]), step
    for step in range(STEPS_PER_EPOCH + 1, DINO_STEPS + 1):
        assert not torch.equal(snapshots[step]["last"], snapshots[step - 1]["last"]), step


def test_dino_teacher_temperature_warms_up_by_epoch(dino):
    """The engine tells the loss the epoch: 0.04 in epoch 0, 0.055 in epoch 1 (warm-up to
    0.07 over 3 epochs)."""
    temps = [m["teacher_temp"] for m in dino.metrics]
    assert temps == pytest.approx([0.04] * 4 + [0.055] * 4)


def test_dino_teacher_follows_the_student_by_the_core_ema(dino):
    """After each optimizer step the core moves the declared teacher: θ_t ← θ_t + (1 − λ)·(θ_s
    − θ_t) with λ = 1 − 0.004·(1 + cos(πk/K))/2: 0.996 at k = 0, 0.998 at k = K/2."""
    lams = [m["momentum_teacher"] for m in dino.metrics]
    assert lams[0] == pytest.approx(0.996, abs=1e-12)
    assert lams[4] == pytest.approx(0.998, abs=1e-12)
    snapshots = dino.tensors
    for step in range(1, DINO_STEPS + 1):
        lam = 1 - 0.004 * (1 + math.cos(math.pi * (step - 1) / DINO_STEPS)) / 2
        assert lams[step - 1] == pytest.approx(lam, abs=1e-12)
        before, now = snapshots[step - 1]["teacher"], snapshots[step]
        torch.testing.assert_close(now["teacher"], before + (1 - lam) * (now["student"] - before))
        assert not torch.equal(now["teacher"], before)
