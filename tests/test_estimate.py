"""``ssl run --estimate``: figures from a few timed steps, nothing trained, tracked or written.

No timing is asserted (the machine running the tests may be shared): the rate model and the
advice are checked on given part times, and the command on a tiny run for what it prints and
leaves behind. ``python -m benchmarks --only estimate`` compares estimates with real runs.
"""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from ssl_core import cli
from ssl_core.training.estimate import Estimate, advise, describe


def made(workers: int, load: float, views: float, model: float, device: str = "cpu"):
    return Estimate(
        device=device,
        batch_size=64,
        steps_per_epoch=10,
        total_steps=100,
        epochs=10,
        workers=workers,
        build_s=1.0,
        load_s=load,
        views_s=views,
        model_s=model,
        knn_s=2.0,
        knn_evaluations=3,
        peak_memory="1.00 GiB resident (this process's peak)",
    )


def test_without_workers_loading_and_the_step_add_up():
    est = made(workers=0, load=0.3, views=0.1, model=0.2)
    assert est.step_s == pytest.approx(0.6) and est.images_per_s == pytest.approx(64 / 0.6)
    assert est.bottleneck == "input"
    assert made(workers=0, load=0.1, views=0.1, model=0.3).bottleneck == "model"


def test_with_workers_the_slower_side_sets_the_pace():
    est = made(workers=4, load=0.3, views=0.1, model=0.1)
    assert est.step_s == pytest.approx(0.3) and est.bottleneck == "input"
    est = made(workers=4, load=0.1, views=0.1, model=0.3)
    assert est.step_s == pytest.approx(0.4) and est.bottleneck == "model"


def test_advice_follows_the_bottleneck(plugins):
    config, selection = _config(plugins, "trainer.precision=32")
    input_bound = made(workers=0, load=0.5, views=0.0, model=0.1, device="cuda:0")
    tips = advise(input_bound, config, plugins.registry, selection)
    assert tips[0].startswith("trainer.num_workers=N")
    model_bound = made(workers=4, load=0.1, views=0.0, model=0.5, device="cuda:0")
    tips = advise(model_bound, config, plugins.registry, selection)
    assert tips[0].startswith("trainer.precision=bf16")
    assert any("trainer.batch_size" in tip for tip in tips)


def _config(plugins, *args):
    from ssl_core.config import build_config

    cfg, selection = build_config(
        ["method=byol", "trainer.device=cpu", "data=synthetic", *args], plugins.registry
    )
    return OmegaConf.create(OmegaConf.to_container(cfg)), selection


def test_description_gives_every_figure():
    text = describe(made(workers=0, load=0.3, views=0.1, model=0.2))
    assert "images/s          106.7" in text
    assert "per epoch         6.0s (10 steps)" in text
    assert (
        "whole run         1m00s (100 steps, 10 epochs) + 3 kNN evaluations x ~2.0s = 1m06s" in text
    )
    assert "bottleneck        the input pipeline (67% of a step is input)" in text


def test_estimate_prints_figures_and_trains_tracks_and_writes_nothing(tmp_path, capsys):
    args = [
        "run",
        "method=byol",
        "backbone=test_resnet",
        "data=synthetic",
        "data.num_samples=40",
        "data.image_size=16",
        "trainer.batch_size=8",
        "trainer.epochs=3",
        "trainer.num_workers=0",
        "byol.proj_hidden_dim=32",
        "byol.proj_dim=16",
        "byol.pred_hidden_dim=32",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"output_dir={tmp_path}/run",
        "--estimate",
    ]
    assert cli.main(args) == 0
    out, err = capsys.readouterr()
    assert re.search(r"^  images/s +\d+\.\d$", out, re.M), out
    assert re.search(r"^  per epoch +\S+ \(3 steps\)$", out, re.M), out
    assert re.search(r"^  whole run +\S+ \(9 steps, 3 epochs\) \+ 2 kNN evaluations", out, re.M)
    assert re.search(r"^  peak memory +\d+\.\d\d GiB resident", out, re.M), out
    assert re.search(
        r"^  bottleneck +the (model|input pipeline) \(\d+% of a step is input\)$", out, re.M
    )
    assert "mlflow" not in err.lower()
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "mlflow.db").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_estimate_takes_one_run_not_a_sweep(capsys):
    assert cli.main(["run", "--multirun", "--estimate", "method=byol"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --estimate takes one run, not --multirun; estimate one combination"
