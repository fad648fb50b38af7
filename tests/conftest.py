"""Shared fixtures: a fresh plugin manager per test, tiny run configs, a temporary MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_core.plugins import Plugins, get_plugins


@pytest.fixture(autouse=True)
def _work_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in its own folder: MLflow puts a SQLite store's artifacts in ./mlruns.

    The index caches of ``data=folder`` go beside it (not in it: a data folder may be
    ``tmp_path``), not to ``~/.cache``.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SSL_CORE_CACHE", f"{tmp_path}-cache")


@pytest.fixture
def plugins() -> Plugins:
    """A fresh plugin manager with everything installed loaded through entry points."""
    return get_plugins()


@pytest.fixture
def tiny_run_args(tmp_path: Path) -> list[str]:
    """Overrides for a run that takes seconds: tiny backbone, heads and synthetic data."""
    return [
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
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "tracking.experiment=tests",
        f"output_dir={tmp_path}/run",
    ]
