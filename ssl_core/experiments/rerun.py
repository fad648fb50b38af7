"""A run's resolved config as the base of a new command line: ``--from RUN`` and ``resume=RUN``.

``ssl run --from RUN key=value`` re-runs a run: its resolved config (from MLflow's
``config/config.yaml`` artifact for a run id, or the ``config.yaml`` of a run directory, a
checkpoint or a YAML file) with the new overrides on top, as a new run: a new name and run
directory. When the run is a tracked one, the plugin versions it was trained with (its
``plugin.*`` tags) are compared with the installed ones, and a difference is a warning.

``ssl run resume=RUN key=value`` continues a run from its newest checkpoint; its resolved
config is the base, so the command line needs only what changes (``trainer.epochs=200``).
``RUN`` is a run directory, a checkpoint, or an MLflow run id, whose ``output_dir`` is used
when it is on this machine, else its ``checkpoint`` artifact is fetched into ``output_dir``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from ssl_core.config.files import Layer, as_override, overrides_of, read_yaml
from ssl_core.errors import UserError

#: Keys of a run's config that name that run, not what it computes: a re-run gets its own.
IDENTITY_KEYS = ("output_dir", "tracking.run_name", "resume.")
#: Keys of a run's config a resume does not take: the run directory follows from
#: ``resume.path`` (the config may name it relative to another working directory).
RESUME_DROPPED = ("output_dir", "resume.")


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.endswith((".yaml", ".yml", ".pt"))


def _config_beside(path: Path) -> dict[str, Any]:
    """The resolved config of a run directory, a checkpoint in one, or a YAML file."""
    shown = f"--from {path}"
    if path.is_dir():
        if (path / "config.yaml").is_file():
            return read_yaml(path / "config.yaml", shown)
        raise UserError(f"{shown}: the folder holds no config.yaml; give a run directory")
    if path.suffix in (".yaml", ".yml"):
        return read_yaml(path, shown)
    return _checkpoint_config(path)


def _checkpoint_config(path: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from ssl_core.training.checkpoint import load_checkpoint

    # only the config is read: the weights are loaded once, by the run itself
    state = load_checkpoint(path, mmap=True)
    return OmegaConf.to_container(OmegaConf.create(state["config"]))


def _mlflow_config(run_id: str, uri: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A tracked run's resolved config and the plugin versions it ran with."""
    from ssl_core.experiments.store import get_run, open_store, quiet_downloads

    client = open_store(uri)
    run = get_run(client, run_id, uri)
    if "config" not in {a.path for a in client.list_artifacts(run_id)}:
        raise UserError(
            f"--from {run_id}: the run has no config artifact ({run.info.status}); give its "
            "run directory or config.yaml"
        )
    with tempfile.TemporaryDirectory(prefix="ssl-from-") as tmp, quiet_downloads():
        path = client.download_artifacts(run_id, "config/config.yaml", tmp)
        tree = read_yaml(path, f"--from {run_id}")
    versions = {
        key.removeprefix("plugin."): value
        for key, value in run.data.tags.items()
        if key.startswith("plugin.")
    }
    return tree, versions


def from_layer(spec: str, uri: str, installed: dict[str, str] | None) -> Layer:
    """The layer of ``--from SPEC``: the run's config less the keys that name the run.

    :param installed: ``{distribution: version}`` now installed, compared with the run's.
    """
    path = Path(spec).expanduser()
    versions = None
    if path.exists():
        tree = _config_beside(path)
    elif _looks_like_path(spec):
        raise UserError(f"--from {spec}: no such file or directory")
    else:
        tree, versions = _mlflow_config(spec, uri)
    if versions is not None and installed is not None:
        warn_versions(spec, versions, installed)
    args = [a for a in overrides_of(tree) if not a.partition("=")[0].startswith(IDENTITY_KEYS)]
    return Layer(f"--from {spec}", args, lenient=True)


def version_changes(recorded: dict[str, str], installed: dict[str, str]) -> list[str]:
    """``dist recorded -> installed`` for every plugin distribution whose version differs."""
    changes = []
    for dist in sorted(set(recorded) | set(installed)):
        before, now = recorded.get(dist, "absent"), installed.get(dist, "not installed")
        if before != now:
            changes.append(f"{dist} {before} -> {now}")
    return changes


def warn_versions(spec: str, recorded: dict[str, str], installed: dict[str, str]) -> None:
    changes = version_changes(recorded, installed)
    if changes:
        print(
            f"warning: run {spec} was trained with other plugin versions than those installed: "
            f"{', '.join(changes)}; the re-run may not repeat it",
            file=sys.stderr,
        )


# --- resume=RUN ----------------------------------------------------------------------------


def _run_dir_of_id(run_id: str, uri: str, output_dir: str | None) -> Path:
    """The run directory of a tracked run: its ``output_dir`` when it is here, else
    ``output_dir`` (given, or the run's) with the ``checkpoint`` artifact fetched into it."""
    from ssl_core.experiments.store import get_run, open_store, quiet_downloads
    from ssl_core.training.resume import newest_checkpoint

    client = open_store(uri)
    run = get_run(client, run_id, uri)
    recorded = run.data.params.get("output_dir")
    here = Path(recorded).expanduser() if recorded else None
    if output_dir is None and here is not None:
        if newest_checkpoint(here) is not None:
            return here
    target = Path(output_dir or recorded or f"runs/{run_id}").expanduser()
    if newest_checkpoint(target) is not None:
        return target
    if "checkpoint" not in {a.path for a in client.list_artifacts(run_id)}:
        raise UserError(
            f"run {run_id}'s directory {recorded} is not here and the run has no checkpoint "
            "artifact; give the run directory or a checkpoint"
        )
    target.mkdir(parents=True, exist_ok=True)
    with quiet_downloads():
        client.download_artifacts(run_id, "checkpoint/checkpoint.pt", str(target))
    (target / "checkpoint" / "checkpoint.pt").replace(target / "checkpoint.pt")
    (target / "checkpoint").rmdir()
    print(f"resume={run_id}: fetched its checkpoint into {target}", file=sys.stderr)
    return target


def resume_layers(spec: str, output_dir: str | None, uri: str) -> tuple[Layer, Layer] | None:
    """For ``resume=SPEC``: the layer of the run's config (under everything) and the one
    pointing ``resume.path`` at the run directory or checkpoint (over everything); None when
    there is nothing to resume yet (``resume=auto`` in a fresh ``output_dir``)."""
    from ssl_core.training.resume import step_checkpoints

    if spec == "auto":
        if output_dir is None or not step_checkpoints(Path(output_dir).expanduser()):
            return None
        path = Path(output_dir).expanduser()
        pointer: list[str] = []
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            if _looks_like_path(spec):
                return None  # the engine says that it does not exist
            try:
                path = _run_dir_of_id(spec, uri, output_dir)
            except UserError as exc:
                raise UserError(
                    f"resume={spec} is no file or folder, and as a run id: {exc}"
                ) from None
        pointer = [as_override("resume.path", str(path))]
    checkpoint = _newest_checkpoint(path)
    if checkpoint is None:
        return None
    tree = _checkpoint_config(checkpoint)
    args = [a for a in overrides_of(tree) if not a.partition("=")[0].startswith(RESUME_DROPPED)]
    return Layer(f"resume={spec}", args, lenient=True), Layer(None, pointer)


def _newest_checkpoint(path: Path) -> Path | None:
    from ssl_core.training.resume import newest_checkpoint

    return path if path.is_file() else newest_checkpoint(path)
