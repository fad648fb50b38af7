"""Reading an existing MLflow store: open it without creating one, find a run by id."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ssl_core.errors import UserError

DEFAULT_URI = "sqlite:///mlflow.db"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory), else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


def open_store(uri: str) -> Any:
    """An ``MlflowClient`` on ``uri``; a SQLite store must already exist.

    :raises UserError: when the URI is not a store URI or its SQLite file is missing (MLflow
        would silently create an empty store there).
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or not rest:
        raise UserError(f"malformed tracking.uri '{uri}'; expected e.g. {DEFAULT_URI}")
    path = sqlite_path(uri)
    if path is not None and path.is_dir():
        raise UserError(
            f"tracking.uri={uri} names a folder ({path}), not an MLflow store; name its "
            "database file (e.g. .../mlflow.db)"
        )
    if path is not None and not path.is_file():
        raise UserError(
            f"no MLflow store at {uri} ({path} does not exist); pass tracking.uri=... naming "
            "the store the runs were logged to"
        )
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def get_run(client: Any, run_id: str, uri: str) -> Any:
    """The run ``run_id`` of the store.

    :raises UserError: when the store has no such run.
    """
    try:
        return client.get_run(run_id)
    except Exception:
        raise UserError(f"no run '{run_id}' in the MLflow store {uri}") from None


@contextmanager
def quiet_downloads() -> Iterator[None]:
    """No MLflow progress bars for the one or two files a source needs."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
