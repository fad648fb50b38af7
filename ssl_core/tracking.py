"""MLflow tracking as a built-in plugin: params, per-step metrics, artifacts, tags.

The default store is MLflow's embedded SQLite file (``sqlite:///mlflow.db`` in the working
directory); ``tracking.uri=http://host:5000`` sends the run to a tracking server instead.
Metrics are buffered and sent in batches so logging does not slow the training loop.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from . import hookimpl
from .errors import UserError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from .run import RunContext

_MAX_PARAM_LEN = 6000  # MLflow's limit on a param value
_BATCH = 200  # entries per log_batch call


def _check_uri(uri: str) -> None:
    scheme, sep, rest = uri.partition("://")
    known = ("sqlite", "http", "https", "file", "databricks", "postgresql", "mysql", "mssql")
    if not sep or not rest or scheme.split("+")[0] not in known:
        valid = ", ".join(f"{k}://" for k in known[:4])
        raise UserError(f"malformed tracking.uri '{uri}'; expected e.g. {valid}...")


class MlflowTracker:
    """Logs each run to MLflow; answers the lifecycle hooks, owns its client and buffer."""

    def __init__(self) -> None:
        self.client: Any = None
        self.run_id: str | None = None
        self.buffer: list[Any] = []

    @hookimpl
    def ssl_validate_config(self, config: DictConfig) -> None:
        if config.tracking.enabled:
            _check_uri(config.tracking.uri)

    @hookimpl
    def ssl_run_start(self, run: RunContext) -> None:
        tracking = run.config.tracking
        if not tracking.enabled:
            return
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        from .config import flatten

        try:
            client = MlflowClient(tracking_uri=tracking.uri)
            experiment = client.get_experiment_by_name(tracking.experiment)
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else client.create_experiment(tracking.experiment)
            )
            mlrun = client.create_run(experiment_id, run_name=tracking.run_name, tags=run.tags)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot use MLflow store '{tracking.uri}': {first}") from None
        self.client, self.run_id, self.buffer = client, mlrun.info.run_id, []
        run.tracking_run_id = self.run_id
        params = [Param(k, str(v)[:_MAX_PARAM_LEN]) for k, v in flatten(run.config).items()]
        for i in range(0, len(params), 100):
            client.log_batch(self.run_id, params=params[i : i + 100])
        print(
            f"mlflow: run {self.run_id} in experiment '{tracking.experiment}' at {tracking.uri}",
            file=sys.stderr,
        )

    def _log(self, metrics: dict[str, float], step: int) -> None:
        if self.run_id is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.buffer.extend(Metric(k, float(v), now, step) for k, v in metrics.items())
        if len(self.buffer) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self.run_id is None or not self.buffer:
            return
        for i in range(0, len(self.buffer), 1000):
            self.client.log_batch(self.run_id, metrics=self.buffer[i : i + 1000])
        self.buffer = []

    @hookimpl
    def ssl_step_end(self, run: RunContext, step: int, metrics: dict[str, float]) -> None:
        self._log(metrics, step)

    @hookimpl
    def ssl_epoch_end(self, run: RunContext, epoch: int, metrics: dict[str, float]) -> None:
        self._log({**metrics, "epoch": epoch}, run.step)
        self.flush()

    @hookimpl
    def ssl_run_end(self, run: RunContext, status: str, metrics: dict[str, float]) -> None:
        if self.run_id is None:
            return
        try:
            self._log(metrics, run.step)
            self.flush()
            for name, path in run.artifacts.items():
                if path.exists():
                    self.client.log_artifact(self.run_id, str(path), artifact_path=name)
        finally:
            self.client.set_terminated(self.run_id, status=status)
            self.client, self.run_id = None, None
