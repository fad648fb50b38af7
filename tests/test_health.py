"""Representation health: the metrics against their references, the guard's rules, the monitor
in a run (logged, neutral), and the collapse guard tripping on collapsed toy methods only."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from ssl_core import hookimpl, option
from ssl_core.config import build_config
from ssl_core.errors import PluginError, RunFailed
from ssl_core.monitors.collapse import WINDOW, CollapseGuard, judge
from ssl_core.monitors.health import split_views, watched_modules
from ssl_core.monitors.health_metrics import health
from ssl_core.plugins import get_plugins
from ssl_core.training.engine import train

sys.path.insert(0, str(Path(__file__).parent))
import toy_plugins  # noqa: E402

# --- the metrics -----------------------------------------------------------------------------


def reference_rankme(z: torch.Tensor, eps: float = 1e-7) -> float:
    s = torch.linalg.svdvals(z.double())
    p = s / s.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))


def test_metrics_match_their_references_on_gaussian_features():
    torch.manual_seed(0)
    z1 = torch.randn(256, 512)
    z2 = z1 + 0.1 * torch.randn(256, 512)
    values = health(z1, z2)
    x, y = nn.functional.normalize(z1, dim=1), nn.functional.normalize(z2, dim=1)
    assert values["feature_std"] == pytest.approx(float(x.std(dim=0).mean()), rel=1e-5)
    assert values["feature_std_ratio"] == pytest.approx(values["feature_std"] * math.sqrt(512))
    assert values["feature_std_ratio"] == pytest.approx(1.0, abs=0.01)  # isotropic
    assert values["rankme"] == pytest.approx(reference_rankme(z1), rel=1e-5)
    assert 0.9 * 256 < values["rankme"] <= 256
    assert values["rankme_ratio"] == pytest.approx(values["rankme"] / 256, rel=1e-6)
    uniform = float(torch.pdist(x).pow(2).mul(-2).exp().mean().log())
    assert values["uniform"] == pytest.approx(uniform, rel=1e-5)
    assert values["uniform"] == pytest.approx(-4 + 8 / 512, abs=0.01)
    assert values["align"] == pytest.approx(float((x - y).norm(dim=1).pow(2).mean()), rel=1e-5)


def test_constant_and_rank_one_features_read_as_collapsed():
    torch.manual_seed(0)
    constant = health(torch.randn(1, 64).repeat(64, 1))
    assert constant["feature_std"] == 0 and constant["uniform"] == pytest.approx(0, abs=1e-6)
    assert constant["rankme"] == pytest.approx(1.0, abs=1e-3)
    assert "align" not in constant
    signed = torch.randn(64, 1) * torch.randn(1, 128)  # rank 1, but spread on both sides
    rank_one = health(signed)
    assert rank_one["rankme"] == pytest.approx(1.0, abs=1e-3)
    assert rank_one["feature_std_ratio"] > 0.6  # why the std alone cannot see it
    nan = health(torch.full((8, 4), math.nan))
    assert all(math.isnan(v) for v in nan.values())


def test_views_are_split_whether_concatenated_or_one_at_a_time():
    a, b, local = torch.randn(4, 3), torch.randn(4, 3), torch.randn(12, 3)
    one_pass = split_views([torch.cat([a, b, local])], images=4)
    separate = split_views([a, b], images=4)
    for views in (one_pass, separate):
        assert torch.equal(views[0], a) and torch.equal(views[1], b)
    assert len(split_views([a], images=4)) == 1
    assert split_views([a[:1]], images=None) is None


# --- the guard's rules -----------------------------------------------------------------------


def values(std: float, rank: float = 20.0, uniform: float = -2.0) -> dict[str, float]:
    return {"feature_std_ratio": std, "rankme": rank, "uniform": uniform}


def test_rules_give_each_state_its_level():
    assert judge(values(0.7), 64, 25.0).level == 0
    assert judge(values(0.01, uniform=-0.001), 64, 25.0).level == 2  # one vector
    assert judge(values(0.8, rank=1.2), 64, 25.0).level == 2  # rank 1, spread kept
    assert judge(values(0.8, rank=1.2), 16, 25.0).level == 0  # too few samples for RankMe
    assert judge(values(0.15), 64, 25.0).level == 1
    assert judge(values(0.7, rank=4.0), 64, 25.0).level == 1  # under 0.2x the first check
    assert judge(values(0.7, rank=6.0), 64, 25.0).level == 0
    assert judge(values(math.nan), 64, 25.0).level == 2


def test_guard_waits_out_the_warm_up_and_needs_a_whole_window():
    guard = CollapseGuard()
    bad = {"projector": (values(0.0, rank=1.0, uniform=0.0), 64)}
    good = {"projector": (values(0.7), 64)}
    for step in range(1, WINDOW + 1):  # the warm-up: even collapsed checks do not count
        assert guard.observe(step, bad).level == 0
    guard = CollapseGuard()
    for step in range(1, WINDOW + 3):
        guard.observe(step, good)
    for step in range(WINDOW + 3, 2 * WINDOW + 2):  # one check short of a window
        assert guard.observe(step, bad).level == 0
    alarm = guard.observe(2 * WINDOW + 2, bad)
    assert (alarm.level, alarm.module, alarm.since) == (2, "projector", WINDOW + 3)
    assert guard.observe(2 * WINDOW + 3, good).level == 0


# --- watched modules -------------------------------------------------------------------------


def test_projections_are_the_declared_modules_or_a_projector():
    encoder, head = nn.Linear(2, 2), nn.Linear(2, 2)

    class Declares(nn.Module):
        def health_modules(self):
            return {"head": head}

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.projector = head

    assert watched_modules(Declares(), encoder) == {"encoder": encoder, "head": head}
    assert watched_modules(Plain(), encoder) == {"encoder": encoder, "projector": head}
    assert watched_modules(nn.Module(), encoder) == {"encoder": encoder}

    class Broken(nn.Module):
        def health_modules(self):
            return {"head": "not a module"}

    with pytest.raises(PluginError, match=r"Broken.health_modules\(\) returned"):
        watched_modules(Broken(), encoder)


# --- in a run --------------------------------------------------------------------------------


class StepRecorder:
    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    @hookimpl
    def ssl_step_end(self, run, step, metrics):
        self.steps.append(dict(metrics))


def test_health_is_logged_every_n_steps_and_leaves_training_bitwise_unchanged(
    tmp_path, tiny_run_args
):
    base = [a for a in tiny_run_args if not a.startswith(("output_dir=", "tracking."))]
    base += ["tracking.enabled=false", "eval.knn=false", "eval.knn_every=0", "data.image_size=16"]
    runs = {}
    for name, extra in (
        ("plain", ["eval.health_every=0", "trainer.collapse=off"]),
        ("watched", ["eval.health_every=2", "trainer.collapse=stop"]),
    ):
        recorder = StepRecorder()
        plugins = get_plugins(extra=[("recorder", recorder)])
        config, selection = build_config(
            [*base, *extra, f"output_dir={tmp_path}/{name}"], plugins.registry
        )
        train(config, selection, plugins)
        runs[name] = (load_file(f"{tmp_path}/{name}/encoder.safetensors"), recorder.steps)
    (plain, plain_steps), (watched, watched_steps) = runs["plain"], runs["watched"]
    assert plain.keys() == watched.keys()
    for key in plain:
        assert torch.equal(plain[key], watched[key]), f"{key} changed by the health monitor"
    assert not any(k.startswith("health/") for m in plain_steps for k in m)
    logged = [i + 1 for i, m in enumerate(watched_steps) if "health/rankme" in m]
    assert logged == list(range(2, len(watched_steps) + 1, 2))
    metrics = watched_steps[1]
    for key in ("feature_std", "feature_std_ratio", "rankme", "uniform", "align"):
        assert math.isfinite(metrics[f"health/{key}"]), key
        assert math.isfinite(metrics[f"health/projector/{key}"]), key
    assert metrics["health/alarm"] == 0.0
    assert [m["loss"] for m in plain_steps] == [m["loss"] for m in watched_steps]


@dataclass
class CollapsingOptions:
    mode: str = option(
        "constant", "what the projection collapses to", choices=("constant", "rank1")
    )
    after: int = option(3, "healthy steps before the collapse", min=0)


class CollapsingProjection(nn.Module):
    """A linear projection that, after ``after`` steps, gives one vector or a rank-1 set."""

    def __init__(self, width: int, options: CollapsingOptions) -> None:
        super().__init__()
        self.linear = nn.Linear(width, 16)
        self.options = options
        self.steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        if self.steps <= self.options.after:
            return z
        if self.options.mode == "constant":
            return z * 0 + self.linear.bias
        spread = (x - x.mean(dim=0)).sum(dim=1, keepdim=True)  # signs differ between rows
        return spread * z.mean(dim=0, keepdim=True)


class CollapsingModel(nn.Module):
    def __init__(self, backbone: nn.Module, options: CollapsingOptions) -> None:
        super().__init__()
        self.encoder = backbone
        self.projector = CollapsingProjection(backbone.num_features, options)

    def forward(self, views):
        if self.training:
            self.projector.steps += 1
        return [self.projector(self.encoder(v)) for v in views]


class Collapsing:
    def __init__(self, options: CollapsingOptions) -> None:
        self.options = options

    @hookimpl
    def ssl_build_heads(self, backbone):
        return CollapsingModel(backbone, self.options)

    @hookimpl
    def ssl_compute_loss(self, model, views):
        z1, z2 = model(views)
        return {"loss": (z1 - z2).pow(2).mean()}


class Flat:
    """A backbone that is one linear map of the pixels: healthy features of random images at
    no cost, so that only the projection collapses."""

    def __init__(self, config) -> None:
        self.size = int(config.data.image_size)

    @hookimpl
    def ssl_build_backbone(self):
        backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * self.size * self.size, 32))
        backbone.num_features = 32
        return backbone


class CollapsingPlugin:
    @hookimpl
    def ssl_register_methods(self, register):
        register("collapsing", Collapsing, options=CollapsingOptions, views=2)

    @hookimpl
    def ssl_register_backbones(self, register):
        register("flat", Flat)


def collapsing_run(tmp_path, mode: str, action: str, *extra: str):
    recorder = StepRecorder()
    plugins = get_plugins(
        extra=[("toy", toy_plugins), ("collapsing", CollapsingPlugin()), ("recorder", recorder)]
    )
    args = [
        "method=collapsing",
        f"collapsing.mode={mode}",
        "collapsing.after=3",
        "backbone=flat",
        "augment=toyviews",
        "data=synthetic",
        "data.num_samples=64",  # 48 training images: one batch of 32 an epoch
        "data.image_size=16",
        "trainer.batch_size=32",
        "trainer.epochs=12",
        "trainer.num_workers=0",
        "optim.name=sgd",
        "optim.lr=0.01",
        "eval.knn=false",
        "eval.knn_every=0",
        "eval.health_every=1",
        f"trainer.collapse={action}",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"output_dir={tmp_path}/run",
        *extra,
    ]
    config, selection = build_config(args, plugins.registry)
    return config, recorder, lambda: train(config, selection, plugins)


def mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("ssl_core")
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


EXPECTED = {
    "constant": "projector features collapsed to one vector: std·√d 0.000",
    "rank1": "projector features collapsed to 1.00 effective dimensions (RankMe of 32 samples",
}


@pytest.mark.parametrize("mode", ["constant", "rank1"])
def test_guard_warns_of_a_collapsed_projection_within_the_window(tmp_path, capsys, mode):
    # Healthy for 3 steps, collapsed from step 4: checks 4-8 make the window (the warm-up,
    # checks 1-5, is over by then), so the alarm comes at step 8, since step 4.
    _, recorder, run = collapsing_run(tmp_path, mode, "warn", "tracking.enabled=false")
    run()
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "representation collapse" in line]
    assert len(warnings) == 1, err
    assert warnings[0].startswith(
        "warning: representation collapse at step 8, since step 4 (5 checks in a row): "
        + EXPECTED[mode]
    )
    assert "learning rate too high" in warnings[0]
    assert "last good checkpoint: " in warnings[0] and "step-00000003.pt (kept)" in warnings[0]
    assert [m["health/alarm"] for m in recorder.steps] == [0.0] * 7 + [2.0] * 5


@pytest.mark.parametrize("mode", ["constant", "rank1"])
def test_guard_stops_a_collapsed_run_keeping_its_last_good_checkpoint(tmp_path, mode):
    tracked = mode == "constant"  # one MLflow store is enough to see the FAILED status
    config, _, run = collapsing_run(tmp_path, mode, "stop", f"tracking.enabled={tracked}")
    with pytest.raises(RunFailed) as failed:
        run()
    message = str(failed.value)
    assert message.startswith("representation collapse at step 8, since step 4")
    assert EXPECTED[mode] in message and message.endswith("stopped by trainer.collapse=stop")
    good = Path(config.output_dir) / "checkpoints" / "step-00000003.pt"
    assert f"last good checkpoint: {good} (kept)" in message
    # kept through the rotation (keep_checkpoints=3: steps 6-8 and the pinned one)
    names = sorted(p.name for p in good.parent.iterdir())
    assert names == [f"step-0000000{i}.pt" for i in (3, 6, 7, 8)]
    assert not (Path(config.output_dir) / "checkpoint.pt").exists()
    if not tracked:
        return
    client, logged = mlflow_run(tmp_path)
    assert logged.info.status == "FAILED"
    alarms = [m.value for m in client.get_metric_history(logged.info.run_id, "health/alarm")]
    assert alarms == [0.0] * 7 + [2.0]  # logged in MLflow, step by step, to the last one
    assert logged.data.metrics["health/projector/rankme"] < 2


def test_healthy_byol_on_the_digits_does_not_trip_the_guard(tmp_path, capsys):
    recorder = StepRecorder()
    plugins = get_plugins(extra=[("recorder", recorder)])
    args = [
        "method=byol",
        "backbone=test_resnet",
        "data=digits",
        "data.image_size=8",  # the digits' own size
        "augment=kornia",
        "trainer.batch_size=32",
        "trainer.max_steps=20",
        "trainer.num_workers=0",
        "optim.warmup_epochs=0",
        "byol.proj_hidden_dim=64",
        "byol.proj_dim=32",
        "byol.pred_hidden_dim=64",
        "eval.knn=false",
        "eval.knn_every=0",
        "eval.health_every=1",
        "trainer.collapse=stop",
        "tracking.enabled=false",
        f"output_dir={tmp_path}/run",
    ]
    config, selection = build_config(args, plugins.registry)
    train(config, selection, plugins)
    assert "representation collapse" not in capsys.readouterr().err
    assert [m["health/alarm"] for m in recorder.steps] == [0.0] * 20
    for key in ("health/feature_std_ratio", "health/projector/feature_std_ratio"):
        assert min(m[key] for m in recorder.steps) > 0.3, key
    assert min(m["health/projector/rankme"] for m in recorder.steps) > 4
