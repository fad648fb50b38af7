"""The MLflow tracker: an unreachable server at start, a server that goes away mid-run."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

from ssl_core.cli import main
from ssl_core.experiments import mlflow_tracker as tracking
from ssl_core.experiments.mlflow_tracker import MlflowTracker


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_fails_before_any_work(tmp_path, tiny_run_args, capsys):
    uri = f"http://127.0.0.1:{closed_port()}"
    args = [a for a in tiny_run_args if not a.startswith("tracking.uri")]
    assert main(["run", *args, f"tracking.uri={uri}"]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"cannot reach the MLflow tracking server at {uri}" in line
    assert not (tmp_path / "run").exists()


class FlakyClient:
    """Takes metrics while ``up``; raises like an absent server otherwise."""

    def __init__(self) -> None:
        self.up = True
        self.metrics: list = []
        self.status = None

    def log_batch(self, run_id, metrics=()):
        if not self.up:
            raise ConnectionError("Connection refused")
        self.metrics.extend(metrics)

    def log_artifact(self, *args, **kwargs):
        pass

    def set_terminated(self, run_id, status):
        if not self.up:
            raise ConnectionError("Connection refused")
        self.status = status


def tracker_with(client: FlakyClient) -> MlflowTracker:
    tracker = MlflowTracker()
    tracker.client, tracker.run_id = client, "run-1"
    return tracker


def fake_run(tmp_path, step: int = 0):
    return SimpleNamespace(step=step, artifacts={}, output_dir=tmp_path)


def test_metrics_are_kept_while_the_server_is_away_and_sent_when_it_returns(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(tracking, "_RETRY_AFTER_S", 0.0)
    client = FlakyClient()
    tracker = tracker_with(client)
    run = fake_run(tmp_path)
    tracker.ssl_step_end(run=run, step=1, metrics={"loss": 4.0})
    client.up = False
    tracker.ssl_step_end(run=run, step=2, metrics={"loss": 3.0})
    tracker.ssl_checkpoint(run=run, path=tmp_path / "c.pt")  # flush fails, training goes on
    assert "training goes on" in capsys.readouterr().err
    tracker.ssl_step_end(run=run, step=3, metrics={"loss": 2.0})
    client.up = True
    tracker.ssl_epoch_end(run=fake_run(tmp_path, 3), epoch=1, metrics={"epoch_loss": 3.0})
    assert [(m.key, m.step) for m in client.metrics] == [
        ("loss", 1),
        ("loss", 2),
        ("loss", 3),
        ("epoch_loss", 3),
        ("epoch", 3),
    ]
    tracker.ssl_run_end(run=fake_run(tmp_path, 3), status="FINISHED", metrics={})
    assert client.status == "FINISHED"


def test_metrics_still_unsent_at_the_end_go_to_the_run_directory(tmp_path, capsys):
    client = FlakyClient()
    tracker = tracker_with(client)
    client.up = False
    tracker.ssl_step_end(run=fake_run(tmp_path), step=1, metrics={"loss": 4.0})
    tracker.ssl_run_end(run=fake_run(tmp_path, 1), status="FINISHED", metrics={"knn_top1": 0.5})
    lines = (tmp_path / "unsent_metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["loss", "knn_top1"]
    assert "unsent_metrics.jsonl" in capsys.readouterr().err
