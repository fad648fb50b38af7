"""The experiment loop in one MLflow store: a 2x2 sweep, child evaluations, ``ssl compare``.

The store and the sweep are made once for the module: creating an MLflow store costs more
than the tiny runs themselves.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ssl_core.cli import main

#: The tiny run of conftest's ``tiny_run_args`` (that fixture is per test; this store is not).
TINY = [
    "method=byol",
    "backbone=test_resnet",
    "data=synthetic",
    "data.num_samples=40",
    "data.image_size=32",
    "augment=kornia",
    "trainer.batch_size=8",
    "trainer.epochs=2",
    "trainer.num_workers=0",
    "trainer.log_every=1",
    "optim.warmup_epochs=0",
    "byol.proj_hidden_dim=32",
    "byol.proj_dim=16",
    "byol.pred_hidden_dim=32",
]
TAUS = ("0.99", "0.996")
LRS = ("0.1", "0.2")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("experiments")
    uri = f"sqlite:///{root}/mlflow.db"
    args = [
        *TINY,
        f"tracking.uri={uri}",
        "tracking.experiment=sweep",
        f"output_dir={root}/sweep",
        "eval.knn_every=1",
        "eval.health_every=2",
        f"byol.tau_base={','.join(TAUS)}",
        f"optim.lr={','.join(LRS)}",
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # MLflow puts a SQLite store's artifacts in ./mlruns
        assert main(["run", "--multirun", *args]) == 0
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("sweep")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return {"root": root, "uri": uri, "client": client, "experiment": experiment, "runs": runs}


@pytest.fixture(scope="module")
def evaluated(sweep) -> dict:
    """A linear evaluation of the first run, by run id: a child run."""
    run_id = sweep["runs"][0].info.run_id
    args = [f"run={run_id}", f"tracking.uri={sweep['uri']}", "trainer.num_workers=0"]
    return {
        "trained": _eval_json("linear", *args, "eval.linear_epochs=5"),
        "init": _eval_json("linear", *args, "eval.linear_epochs=5", "eval.random_init=true"),
    }


def _eval_json(protocol: str, *args: str) -> dict:
    out = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(out):
        assert main(["eval", protocol, "--json", *args]) == 0
    return json.loads(out.getvalue())


def test_multirun_2x2_creates_four_runs_in_one_experiment(sweep):
    runs = sweep["runs"]
    assert len(runs) == 4
    assert all(run.info.status == "FINISHED" for run in runs)
    combos = [(r.data.params["byol.tau_base"], r.data.params["optim.lr"]) for r in runs]
    assert combos == list(itertools.product(TAUS, LRS))  # the last key varies fastest
    assert len({r.info.run_name for r in runs}) == 4
    assert runs[0].info.run_name == "byol.tau_base=0.99 optim.lr=0.1"
    dirs = {r.data.params["output_dir"] for r in runs}
    assert len(dirs) == 4 and all((Path(d) / "checkpoint.pt").is_file() for d in dirs)
    # the kNN monitor logged knn/top1 at each epoch end (3 steps per epoch)
    history = sweep["client"].get_metric_history(runs[0].info.run_id, "knn/top1")
    assert sorted(m.step for m in history) == [3, 6]


def test_multirun_checks_every_config_before_the_first_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--multirun", *TINY, "tracking.enabled=false", "trainer.epochs=1,x"])
    assert code == 2
    assert "trainer.epochs" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_evaluation_by_run_id_is_a_child_run_with_its_own_params(sweep, evaluated):
    parent = sweep["runs"][0]
    result = evaluated["trained"]
    assert result["source_run_id"] == parent.info.run_id and result["nested"]
    child = sweep["client"].get_run(result["eval_run_id"])
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["ssl.eval"] == "linear"
    assert child.info.experiment_id == parent.info.experiment_id
    assert child.data.params["eval.linear_epochs"] == "5"
    assert child.data.params["eval.protocol"] == "linear"
    assert child.data.metrics["linear/top1"] == result["metrics"]["linear/top1"]
    losses = sweep["client"].get_metric_history(child.info.run_id, "linear/train_loss")
    assert sorted(m.step for m in losses) == [1, 2, 3, 4, 5]
    assert evaluated["init"]["random_init"] is True


def test_evaluation_of_a_checkpoint_is_tagged_with_its_run(sweep):
    parent = sweep["runs"][1]
    checkpoint = Path(parent.data.params["output_dir"]) / "checkpoint.pt"
    result = _eval_json(
        "knn", f"run={checkpoint}", f"tracking.uri={sweep['uri']}", "trainer.num_workers=0"
    )
    run = sweep["client"].get_run(result["eval_run_id"])
    assert run.data.tags["ssl.source_run_id"] == parent.info.run_id
    assert run.data.tags["ssl.source"] == str(checkpoint)
    assert "mlflow.parentRunId" not in run.data.tags
    # it lands beside its pretraining run, in the run's experiment
    assert run.info.experiment_id == parent.info.experiment_id


def test_compare_prints_differing_keys_and_final_metrics(sweep, evaluated, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "250")
    ids = [r.info.run_id for r in sweep["runs"][:3]]
    capsys.readouterr()
    assert main(["compare", f"runs={','.join(ids)}", f"tracking.uri={sweep['uri']}"]) == 0
    table = capsys.readouterr().out
    for text in ("byol.tau_base", "optim.lr", "kNN top-1", "linear top-1", "img/s", "wall time"):
        assert text in table, text
    for text in ("std·√d", "RankMe", "uniformity", "alignment", "proj std·√d", "health"):
        assert text in table, text
    assert table.count(" ok ") == 3  # the collapse guard's state at the end of each run
    assert "trainer.batch_size" not in table  # the same in every run
    assert f"{evaluated['trained']['metrics']['linear/top1']:.4f}" in table

    assert main(["compare", "experiment=sweep", f"tracking.uri={sweep['uri']}", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["differing_keys"] == ["byol.tau_base", "optim.lr"]
    assert len(payload["runs"]) == 4  # evaluation runs are not rows
    first = next(r for r in payload["runs"] if r["run_id"] == ids[0])
    assert first["metrics"]["linear_top1"] == evaluated["trained"]["metrics"]["linear/top1"]
    assert first["metrics"]["linear_top1_init"] == evaluated["init"]["metrics"]["linear/top1"]
    assert {"loss", "knn_top1", "img_per_s", "wall_time_s"} <= set(first["metrics"])
    logged = sweep["client"].get_run(ids[0]).data.metrics
    assert first["metrics"]["health_rankme"] == logged["health/rankme"]
    assert first["metrics"]["health_proj_std"] == logged["health/projector/feature_std_ratio"]
    assert first["metrics"]["health_alarm"] == 0.0


def test_compare_csv_sorted_by_a_metric(sweep, capsys):
    args = ["compare", "experiment=sweep", f"tracking.uri={sweep['uri']}", "sort=loss", "--csv"]
    capsys.readouterr()
    assert main(args) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4 and {"byol.tau_base", "optim.lr", "loss"} <= set(rows[0])
    losses = [float(row["loss"]) for row in rows]
    assert losses == sorted(losses)  # lower loss first


def test_compare_plot_is_a_real_png(sweep, tmp_path, capsys):
    out = tmp_path / "curves.png"
    args = ["compare", "experiment=sweep", f"tracking.uri={sweep['uri']}", "--plot", str(out)]
    assert main(args) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 30_000, f"plot is only {len(data)} bytes"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["experiment=nope"], "no experiment 'nope'"),
        (["sort=los"], "did you mean 'loss'"),
        (["colour=red"], "unknown key 'colour'"),
    ],
)
def test_compare_errors_are_one_line(sweep, capsys, args, message):
    assert main(["compare", f"tracking.uri={sweep['uri']}", "experiment=sweep", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_export_by_run_id(sweep, tmp_path, capsys):
    run = sweep["runs"][0]
    out = tmp_path / "enc.safetensors"
    assert (
        main(["export", f"run={run.info.run_id}", f"tracking.uri={sweep['uri']}", f"out={out}"])
        == 0
    )
    exported = Path(run.data.params["output_dir"]) / "encoder.safetensors"
    assert out.read_bytes() == exported.read_bytes()
