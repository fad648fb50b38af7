"""Shared fixtures: a fresh plugin manager per test, tiny run configs, a temporary MLflow store."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass
class TrainedRun:
    """A finished tiny run shared by the tests that only read it (embed, load, --from)."""

    result: Any  # the ssl_core.TrainResult
    root: Path
    args: list[str]

    @property
    def run_id(self) -> str:
        return self.result.run_id

    @property
    def output_dir(self) -> Path:
        return self.result.output_dir

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root}/mlflow.db"

    @property
    def uri(self) -> str:
        return f"tracking.uri={self.tracking_uri}"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One epoch of BYOL on synthetic data, trained with ``ssl_core.train`` in a worker thread
    (as a notebook's background job would: no signal handlers there), tracked in MLflow."""
    from concurrent.futures import ThreadPoolExecutor

    import ssl_core

    root = tmp_path_factory.mktemp("trained")
    args = [
        "backbone=test_resnet",
        "data.num_samples=40",
        "data.image_size=32",
        "augment=albumentations",
        "trainer.batch_size=8",
        "trainer.epochs=1",
        "trainer.num_workers=0",
        "optim.warmup_epochs=0",
        "byol.proj_hidden_dim=32",
        "byol.proj_dim=16",
        "byol.pred_hidden_dim=32",
        f"tracking.uri=sqlite:///{root}/mlflow.db",
        "tracking.experiment=tests",
        f"output_dir={root}/run",
    ]
    # In its own folder, as every test is: MLflow puts a SQLite store's artifacts in ./mlruns.
    with pytest.MonkeyPatch.context() as patch, ThreadPoolExecutor(1) as pool:
        patch.chdir(root)
        result = pool.submit(
            ssl_core.train, method="byol", data="synthetic", overrides=args
        ).result()
    return TrainedRun(result, root, ["method=byol", "data=synthetic", *args])


@pytest.fixture(scope="session")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin package installed into a folder of its own (once per session)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from installs import EXAMPLE, pip_install

    return pip_install(EXAMPLE, tmp_path_factory.mktemp("example-site"))
