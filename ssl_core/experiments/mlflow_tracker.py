"""MLflow tracking as a built-in plugin: params, per-step metrics, artifacts, tags.

The one module of ssl_core that writes to MLflow: training runs through the lifecycle hooks,
evaluations through :func:`log_evaluation`.

The default store is MLflow's embedded SQLite file (``sqlite:///mlflow.db`` in the working
directory); ``tracking.uri=http://host:5000`` sends the run to a tracking server instead.
Metrics are buffered and sent in batches so logging does not slow the training loop. A server
that goes away mid-run does not stop training: metrics stay buffered and are sent when it
answers again, or written to ``output_dir/unsent_metrics.jsonl`` at the end.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_core import hookimpl
from ssl_core.errors import UserError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ssl_core.training.run import RunContext

_MAX_PARAM_LEN = 6000  # MLflow's limit on a param value
_BATCH = 200  # metrics buffered before a send
_RETRY_AFTER_S = 30.0  # after a failed send, wait this long before trying again
_KNOWN_SCHEMES = ("sqlite", "http", "https", "file", "databricks", "postgresql", "mysql", "mssql")


def _check_uri(uri: str) -> None:
    scheme, sep, rest = uri.partition("://")
    if not sep or not rest or scheme.split("+")[0] not in _KNOWN_SCHEMES:
        valid = ", ".join(f"{k}://" for k in _KNOWN_SCHEMES[:4])
        raise UserError(f"malformed tracking.uri '{uri}'; expected e.g. {valid}...")


def _check_sqlite(uri: str) -> None:
    """A ``sqlite:///FILE`` store is a database file, or one that can be made: checked before
    MLflow retries for minutes on a folder, a missing folder or a file of another kind."""
    from ssl_core.experiments.store import sqlite_path
    from ssl_core.paths import check_writable_folder

    path = sqlite_path(uri.split("?", 1)[0])
    if path is None or str(path) in ("", ":memory:"):
        return
    path = path.expanduser()
    if path.is_dir():
        raise UserError(
            f"tracking.uri={uri} names a folder ({path}); name the database file in it, "
            f"e.g. tracking.uri=sqlite:///{path.as_posix().rstrip('/')}/mlflow.db"
        )
    if path.exists():
        try:
            with open(path, "rb") as handle:
                header = handle.read(16)
        except OSError as exc:
            raise UserError(f"tracking.uri={uri}: cannot read {path}: {exc.strerror}") from None
        if header and header != b"SQLite format 3\x00":
            raise UserError(
                f"tracking.uri={uri}: {path} is not an SQLite database; name another file"
            )
        return
    if not path.parent.is_dir():
        raise UserError(
            f"tracking.uri={uri}: the folder {path.parent} does not exist; make it, or name a "
            "database file in an existing folder"
        )
    check_writable_folder(path.parent, "the folder of tracking.uri", "name a writable file")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fail_fast_on_http() -> None:
    # MLflow retries an HTTP request for minutes by default; a run should notice an absent
    # server in seconds (and keep training, see flush).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def experiment_id_of(client: Any, name: str) -> str:
    """The id of the experiment ``name``, created when the store has none of that name."""
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment is not None else client.create_experiment(name)


def _continuation_tags(client: Any, parent: str | None) -> dict[str, str]:
    """A continued run (:mod:`ssl_core.training.continuation`) is a child of the finished run."""
    if not parent:
        return {}
    tags = {"ssl.continued_from": parent}
    try:
        client.get_run(parent)
        tags["mlflow.parentRunId"] = parent
    except Exception:
        pass  # the finished run lives in another store: the tag still names it
    return tags


class MlflowTracker:
    """Logs each run to MLflow; answers the lifecycle hooks, owns its client and buffer."""

    def __init__(self) -> None:
        self.client: Any = None
        self.run_id: str | None = None
        self.buffer: list[Any] = []
        self.logged_until = 0  # a resumed run skips steps its first life already logged
        self.failing_since: float | None = None

    @hookimpl
    def ssl_validate_config(self, config: DictConfig) -> None:
        tracking = config.tracking
        if not tracking.enabled:
            return
        _check_uri(tracking.uri)
        _check_sqlite(tracking.uri)
        if tracking.uri.startswith(("http://", "https://")):
            _fail_fast_on_http()
            from mlflow.tracking import MlflowClient

            try:
                MlflowClient(tracking_uri=tracking.uri).search_experiments(max_results=1)
            except Exception as exc:
                raise UserError(
                    f"cannot reach the MLflow tracking server at {tracking.uri}: {_first_line(exc)}"
                ) from None

    @hookimpl
    def ssl_run_start(self, run: RunContext) -> None:
        tracking = run.config.tracking
        if not tracking.enabled:
            return
        from mlflow.tracking import MlflowClient

        try:
            client = MlflowClient(tracking_uri=tracking.uri)
            run_id = self._continue(client, run.tracking_run_id)
            continued = run_id is not None
            if run_id is None:
                run_id = self._create(client, run)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(
                f"cannot use MLflow store '{tracking.uri}': {_first_line(exc)}"
            ) from None
        self.client, self.run_id, self.buffer, self.failing_since = client, run_id, [], None
        run.tracking_run_id = run_id
        verb = "continuing" if continued else "run"
        print(
            f"mlflow: {verb} {run_id} in experiment '{tracking.experiment}' at {tracking.uri}",
            file=sys.stderr,
        )

    def _continue(self, client: Any, run_id: str | None) -> str | None:
        """Reopen the run of a resumed checkpoint; ``None`` when there is none to reopen."""
        self.logged_until = 0
        if run_id is None:
            return None
        try:
            client.get_run(run_id)
        except Exception:
            return None  # the checkpoint's run lives in another store: start a new one
        client.update_run(run_id, status="RUNNING")
        history = client.get_metric_history(run_id, "loss")
        self.logged_until = max((m.step for m in history), default=0)
        return run_id

    def _create(self, client: Any, run: RunContext) -> str:
        from mlflow.entities import Param

        from ssl_core.config import flatten

        tracking = run.config.tracking
        experiment_id = experiment_id_of(client, tracking.experiment)
        tags = {**run.tags, **_continuation_tags(client, run.extra.get("continued_from"))}
        run_id = client.create_run(experiment_id, run_name=tracking.run_name, tags=tags).info.run_id
        # known at once: if anything below fails, ssl_run_end still marks the run
        self.client, self.run_id = client, run_id
        params = [Param(k, str(v)[:_MAX_PARAM_LEN]) for k, v in flatten(run.config).items()]
        for i in range(0, len(params), 100):
            client.log_batch(run_id, params=params[i : i + 100])
        return run_id

    def _log(self, metrics: dict[str, float], step: int) -> None:
        if self.run_id is None or step <= self.logged_until:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.buffer.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        if len(self.buffer) >= _BATCH:
            self.flush()

    def flush(self, *, force: bool = False) -> bool:
        """Send the buffered metrics; on failure keep them and retry later. True when sent."""
        if self.run_id is None or not self.buffer:
            return True
        waiting = self.failing_since is not None
        if waiting and not force and time.monotonic() - self.failing_since < _RETRY_AFTER_S:
            return False
        try:
            while self.buffer:
                self.client.log_batch(self.run_id, metrics=self.buffer[:1000])
                del self.buffer[:1000]
        except Exception as exc:
            if not waiting:
                print(
                    f"warning: MLflow did not take the metrics ({_first_line(exc)}); "
                    "training goes on and they are kept to send later",
                    file=sys.stderr,
                )
            self.failing_since = time.monotonic()
            return False
        if waiting:
            print("mlflow: the store answers again; buffered metrics sent", file=sys.stderr)
        self.failing_since = None
        return True

    @hookimpl
    def ssl_step_end(self, run: RunContext, step: int, metrics: dict[str, float]) -> None:
        self._log(metrics, step)

    @hookimpl
    def ssl_epoch_end(self, run: RunContext, epoch: int, metrics: dict[str, float]) -> None:
        self._log({**metrics, "epoch": epoch}, run.step)
        self.flush()

    @hookimpl
    def ssl_checkpoint(self, run: RunContext, path: Path) -> None:
        self.flush(force=True)

    @hookimpl
    def ssl_run_end(self, run: RunContext, status: str, metrics: dict[str, float]) -> None:
        if self.run_id is None:
            return
        try:
            self._log(metrics, run.step)
            if not self.flush(force=True):
                self._write_unsent(run)
                return
            try:
                for name, path in run.artifacts.items():
                    if path.exists():
                        self.client.log_artifact(self.run_id, str(path), artifact_path=name)
                self.client.set_terminated(self.run_id, status=status)
            except Exception as exc:
                print(
                    f"warning: MLflow did not take the run's end: {_first_line(exc)}",
                    file=sys.stderr,
                )
        finally:
            self.client, self.run_id = None, None

    def _write_unsent(self, run: RunContext) -> None:
        path = run.output_dir / "unsent_metrics.jsonl"
        with open(path, "a") as handle:
            for m in self.buffer:
                handle.write(
                    json.dumps(
                        {"key": m.key, "value": m.value, "step": m.step, "timestamp": m.timestamp}
                    )
                    + "\n"
                )
        print(
            f"warning: MLflow was unreachable at the end of the run; {len(self.buffer)} metric "
            f"values of run {self.run_id} are in {path}, not in the store",
            file=sys.stderr,
        )
        self.buffer = []


# --- evaluations ------------------------------------------------------------------------------


def log_evaluation(
    cfg: Any, source: Any, protocol: str, evaluation: Any, started_ms: int
) -> str | None:
    """Log an evaluation of ``source`` (an :class:`~ssl_core.evaluation.sources.Source`) as an
    MLflow run of its own; returns its id (None when tracking is off).

    The run is a child of the pretraining run when that run is in this store, tagged
    ``ssl.source_run_id`` otherwise; ``evaluation`` holds ``metrics``, ``history`` (per-epoch
    curves) and ``params``.
    """
    if not cfg.tracking.enabled:
        return None
    tags = {"ssl.eval": protocol, "ssl.source": source.spec}
    if source.run_id:
        tags["ssl.source_run_id"] = source.run_id
    if source.in_store and source.run_id:
        tags["mlflow.parentRunId"] = source.run_id
    params = {"eval.protocol": protocol, "source": source.spec}
    params.update(_config_params(cfg, ("eval", "data", "backbone")))
    params.update(evaluation.params)
    metrics = [(k, v, 0) for k, v in evaluation.metrics.items()]
    for key, points in evaluation.history.items():
        metrics.extend((key, v, step) for step, v in points)
    # The store was checked by ssl_validate_config; like `ssl run`, an evaluation of a
    # checkpoint may be the first run of a new store.
    experiment_id = source.experiment_id if source.in_store else None
    return _log_child_run(
        cfg, experiment_id, cfg.tracking.run_name, tags, params, metrics, started_ms
    )


def log_embeddings(
    cfg: Any, source: Any, path: Path, info: dict[str, Any], started_ms: int
) -> str | None:
    """Log ``ssl embed``'s file as the artifact of an evaluation child run of the source's
    run (``ssl.eval=embed``); only for a source found in this store. Returns the run's id."""
    if not (cfg.tracking.enabled and source.in_store and source.run_id):
        return None
    tags = {
        "ssl.eval": "embed",
        "ssl.source": source.spec,
        "ssl.source_run_id": source.run_id,
        "mlflow.parentRunId": source.run_id,
    }
    params = {"eval.protocol": "embed", "source": source.spec, "out": str(path)}
    params.update(_config_params(cfg, ("data", "backbone")))
    metrics = [("embed/rows", info["rows"], 0), ("embed/dim", info["dim"], 0)]
    return _log_child_run(
        cfg, source.experiment_id, "embed", tags, params, metrics, started_ms, artifact=path
    )


def _config_params(cfg: Any, groups: tuple[str, ...]) -> dict[str, Any]:
    """The config keys of ``groups``, and the seed, as an evaluation's params."""
    from ssl_core.config import flatten

    return {
        key: value
        for key, value in flatten(cfg).items()
        if key.split(".")[0] in groups or key == "trainer.seed"
    }


def _log_child_run(
    cfg: Any,
    experiment_id: str | None,
    run_name: str,
    tags: dict[str, str],
    params: dict[str, Any],
    metrics: list[tuple[str, float, int]],
    started_ms: int,
    artifact: Path | None = None,
) -> str:
    """A finished MLflow run of an evaluation (FAILED if logging it fails); returns its id."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    if experiment_id is None:
        experiment_id = experiment_id_of(client, cfg.tracking.experiment)
    run_id = client.create_run(
        experiment_id, start_time=started_ms, run_name=run_name, tags=tags
    ).info.run_id
    try:
        client.log_batch(
            run_id, params=[Param(k, str(v)[:_MAX_PARAM_LEN]) for k, v in params.items()]
        )
        now = int(time.time() * 1000)
        points = [Metric(k, float(v), now, step) for k, v, step in metrics]
        for i in range(0, len(points), 1000):
            client.log_batch(run_id, metrics=points[i : i + 1000])
        if artifact is not None:
            client.log_artifact(run_id, str(artifact), artifact_path="embeddings")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id
