"""The ``ssl`` command end to end: a tiny run tracked in a temporary MLflow store, and errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from ssl_core.cli import main
from ssl_core.training.checkpoint import load_checkpoint


def _client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


def test_run_end_to_end_is_tracked_in_mlflow(tmp_path, tiny_run_args, capsys):
    assert main(["run", *tiny_run_args]) == 0
    out, err = capsys.readouterr()
    assert "kNN top-1 at initialization" in err
    assert "done:" in out

    client = _client(tmp_path)
    experiment = client.get_experiment_by_name("tests")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["byol.proj_dim"] == "16"
    assert run.data.params["backbone.name"] == "test_resnet"
    assert run.data.tags["method"] == "byol"
    assert run.data.tags["backbone"] == "test_resnet"
    assert run.data.tags["plugin.ssl-core"]

    steps_per_epoch = 30 // 8  # 40 samples, 25% held out, drop_last
    total = 2 * steps_per_epoch
    loss = client.get_metric_history(run.info.run_id, "loss")
    tau = client.get_metric_history(run.info.run_id, "tau")
    lr = client.get_metric_history(run.info.run_id, "lr")
    assert [m.step for m in loss] == list(range(1, total + 1))
    assert len(tau) == total and len(lr) == total
    taus = [m.value for m in sorted(tau, key=lambda m: m.step)]
    assert taus[0] == pytest.approx(0.99)  # BYOL's tau_base for <= 300 epochs
    assert all(b > a for a, b in zip(taus, taus[1:], strict=False))
    assert 0.0 <= run.data.metrics["knn_top1"] <= 1.0
    assert "knn_top1_init" in run.data.metrics
    assert "img_per_s" in run.data.metrics

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoint", "encoder", "config"} <= artifacts
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["step"] == total and ckpt["mlflow_run_id"] == run.info.run_id
    assert any(k.startswith("target_encoder.") for k in ckpt["model"])


def test_exported_encoder_weights_load_into_the_backbone(tmp_path, tiny_run_args):
    import timm
    from safetensors.torch import load_file

    assert main(["run", *tiny_run_args, "trainer.epochs=1", "tracking.enabled=false"]) == 0
    weights = load_file(tmp_path / "run" / "encoder.safetensors")
    model = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    model.load_state_dict(weights)
    assert not torch.equal(
        weights[next(iter(weights))],
        timm.create_model("test_resnet", pretrained=False, num_classes=0).state_dict()[
            next(iter(weights))
        ],
    )


def test_print_config_shows_resolved_defaults(capsys):
    assert main(["run", "method=byol", "backbone=resnet50", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "tau_base: 0.99" in out and "name: resnet50" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "method=byol", "trainer.batch_sise=4"], "did you mean 'trainer.batch_size'"),
        (["run", "method=byol", "backbone=resnet19"], "unknown backbone 'resnet19'"),
        (
            ["run", "method=byol", "byol.tau_base=2"],
            "byol.tau_base=2.0 is out of range; must be in [0.0, 1.0]",
        ),
        (["run", "method=byol", "trainer.epochs=many"], "expected int"),
        (["run", "method=byol", "data=folder"], "data.path is required"),
        (
            ["run", "method=byol", "data=folder", "data.path=/nonexistent/images"],
            "/nonexistent/images",
        ),
        (["run", "method=byol", "tracking.uri=nonsense"], "malformed tracking.uri 'nonsense'"),
        (["config", "method=simsam"], "unknown method 'simsam'"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in err
    assert not list(tmp_path.glob("runs/*/checkpoint.pt"))


def test_bad_tracking_uri_leaves_no_run_and_no_checkpoint(tmp_path, tiny_run_args, capsys):
    args = [a for a in tiny_run_args if not a.startswith("tracking.uri")]
    assert main(["run", *args, "tracking.uri=http//localhost"]) == 2
    assert "malformed tracking.uri" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_console_script_exit_code_and_no_traceback(tmp_path):
    result = subprocess.run(
        [Path(sys.executable).parent / "ssl", "run", "method=byol", "trainer.batch_size=x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: invalid value")
    assert "Traceback" not in result.stderr
    debug = subprocess.run(
        [
            Path(sys.executable).parent / "ssl",
            "--debug",
            "run",
            "method=byol",
            "trainer.batch_size=x",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_an_output_dir_under_home_is_one_folder(tmp_path, tiny_run_args, monkeypatch, capsys):
    """``output_dir=~/...``: the lock, config, checkpoints and encoder all land under $HOME."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    args = [a for a in tiny_run_args if not a.startswith("output_dir=")]
    assert main(["run", *args, "output_dir=~/runs/r", "tracking.enabled=false"]) == 0
    run_dir = tmp_path / "home" / "runs" / "r"
    for name in ("config.yaml", "run.json", "checkpoint.pt", "encoder.safetensors"):
        assert (run_dir / name).is_file(), name
    assert not (Path.cwd() / "~").exists()
