"""The encoder's starting weights: ``backbone.weights=PATH|RUN_ID``, for every backbone.

The weights are tensors named as in the encoder's ``state_dict``: a safetensors file (an
exported encoder, a run's ``encoder.safetensors``, a model's own file such as timm's
``model.safetensors``), a plain ``state_dict`` saved with ``torch.save``, an ssl_core
checkpoint (its online encoder), a run directory, or an MLflow run id (its
``encoder/encoder.safetensors`` artifact, else its checkpoint). They are read before any work,
so a missing file or run stops the run at once, and loaded into the freshly built encoder
before the method builds its heads, so a target network copied from the encoder starts from
them too. The load is strict: a file that does not fit the architecture is one line naming
the missing, unexpected and differently shaped tensors. Only the tensors of a head the encoder
does not have (a classifier the backbone replaced by a module without parameters) are left
out, and said so.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_core.errors import PluginError, UserError
from ssl_core.training import distributed

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

#: Keys named in a mismatch message before "(+N more)".
_SHOWN = 5


def _few(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _head_the_encoder_dropped(encoder: torch.nn.Module, key: str) -> bool:
    """Whether ``key`` belongs to a submodule of ``encoder`` that holds nothing (an Identity
    standing where a classifier was): the file's tensors for it have no place to go."""
    modules = dict(encoder.named_modules())
    parts = key.split(".")[:-1]
    for end in range(len(parts), 0, -1):
        module = modules.get(".".join(parts[:end]))
        if module is not None:
            return next(module.parameters(), None) is None and next(module.buffers(), None) is None
    return False


def load_strict(
    encoder: torch.nn.Module, tensors: Mapping[str, torch.Tensor], what: str, backbone: str
) -> list[str]:
    """Copy ``tensors`` into ``encoder``: every tensor of the encoder, each of its shape.

    :param what: how the weights are named in messages (``backbone.weights=x.safetensors``).
    :return: the keys left out because they belong to a head the encoder does not have.
    :raises UserError: naming the missing, unexpected and differently shaped tensors.
    """
    own = encoder.state_dict()
    tensors = dict(tensors)
    dropped = sorted(k for k in tensors if k not in own and _head_the_encoder_dropped(encoder, k))
    for key in dropped:
        del tensors[key]
    # BatchNorm fills a num_batches_tracked the file lacks itself; torch never reports it
    missing = sorted(k for k in set(own) - set(tensors) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(tensors) - set(own))
    shapes = sorted(
        f"{k} {tuple(tensors[k].shape)}!={tuple(own[k].shape)}"
        for k in set(tensors) & set(own)
        if tuple(tensors[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        parts = [
            f"{len(missing)} missing: {_few(missing)}" if missing else "",
            f"{len(unexpected)} unexpected: {_few(unexpected)}" if unexpected else "",
            f"{len(shapes)} of another shape (file!=encoder): {_few(shapes)}" if shapes else "",
        ]
        raise UserError(
            f"{what} does not fit backbone '{backbone}' ({len(own)} tensors): "
            + "; ".join(p for p in parts if p)
            + "; give weights of the same architecture and options (backbone.small_input, ...)"
        )
    encoder.load_state_dict(tensors, strict=True)
    return dropped


def encoder_state(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The online encoder's tensors in an ssl_core checkpoint (found by its ``encoder_prefix``)."""
    prefix = str(checkpoint.get("encoder_prefix") or "")
    model = checkpoint["model"]
    if not prefix:
        return dict(model)
    return {k[len(prefix) + 1 :]: v for k, v in model.items() if k.startswith(prefix + ".")}


def _file_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    import pickle
    import zipfile

    import torch

    from ssl_core.training.checkpoint import FORMAT

    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise UserError(f"{what} is not a readable safetensors file: {exc}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError):
        raise UserError(
            f"{what} is neither a safetensors file nor a torch file of plain tensors "
            "(a state_dict or an ssl_core checkpoint); it is not loaded"
        ) from None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        return encoder_state(state)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if (
        isinstance(state, dict)
        and state
        and all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        return state
    raise UserError(f"{what} holds no state_dict (a mapping of names to tensors)")


def _run_dir_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    for name in ("encoder.safetensors", "checkpoint.pt"):
        if (path / name).is_file():
            return _file_tensors(path / name, what)
    from ssl_core.training.resume import step_checkpoints

    found = step_checkpoints(path)
    if found:
        return _file_tensors(found[-1], what)
    raise UserError(
        f"{what} is a folder without encoder.safetensors, checkpoint.pt or checkpoints/; give "
        "a run directory, a weights file or an MLflow run id"
    )


def _mlflow_tensors(run_id: str, uri: str, what: str) -> dict[str, torch.Tensor]:
    from ssl_core.experiments.store import get_run, open_store, quiet_downloads

    try:
        client = open_store(uri)
        get_run(client, run_id, uri)
    except UserError as exc:
        raise UserError(
            f"{what} is no file or folder, and as a run id: {exc}; give a weights file, a "
            "checkpoint, a run directory, or the id of a run in tracking.uri"
        ) from None
    names = {a.path for a in client.list_artifacts(run_id)}
    with tempfile.TemporaryDirectory(prefix="ssl-weights-") as tmp, quiet_downloads():
        for folder, file in (("encoder", "encoder.safetensors"), ("checkpoint", "checkpoint.pt")):
            if folder in names:
                path = client.download_artifacts(run_id, f"{folder}/{file}", tmp)
                return _file_tensors(Path(path), what)
    raise UserError(
        f"{what}: run {run_id} has no encoder or checkpoint artifact; give a finished run, "
        "or its run directory or checkpoint file"
    )


def read_weights(spec: str, tracking_uri: str, option: str = "backbone.weights") -> dict:
    """The tensors ``spec`` names: a weights file, a checkpoint, a run directory or a run id.

    :raises UserError: when ``spec`` is none of them or cannot be read.
    """
    what = f"{option}={spec}"
    path = Path(spec).expanduser()
    if path.is_dir():
        return _run_dir_tensors(path, what)
    if path.is_file():
        return _file_tensors(path, what)
    if "/" in spec or "\\" in spec or path.suffix in (".safetensors", ".pt", ".pth", ".bin"):
        raise UserError(f"{what}: no such file or directory")
    return _mlflow_tensors(spec, tracking_uri, what)


def read_starting_weights(config: DictConfig) -> dict[str, torch.Tensor] | None:
    """The tensors of ``backbone.weights``, read before any work; None when not set."""
    spec = config.backbone.get("weights")
    if spec is None or not str(spec).strip():
        return None
    return read_weights(str(spec), str(config.tracking.uri))


def start_encoder(
    encoder: torch.nn.Module, tensors: Mapping | None, config: DictConfig, selection: Any
) -> None:
    """Check the encoder a backbone just built and load the tensors of ``backbone.weights``.

    Called before the method builds its heads, so that a target network copied from the
    encoder starts from the same weights.

    :raises PluginError: when the encoder has no int ``num_features``.
    :raises UserError: when the tensors do not fit it.
    """
    if not isinstance(getattr(encoder, "num_features", None), int):
        raise PluginError(
            f"backbone '{config.backbone.name}' of plugin '{selection.backbone.provider}' built "
            f"a {type(encoder).__name__} without an int num_features (the width of its "
            "output), which every backbone must expose"
        )
    if tensors is None:
        return
    spec = config.backbone.weights
    dropped = load_strict(encoder, tensors, f"backbone.weights={spec}", str(config.backbone.name))
    if distributed.rank() == 0:
        left = (
            f"; left out {len(dropped)} of a head it has not ({_few(dropped)})" if dropped else ""
        )
        print(
            f"backbone.weights: the encoder starts from {spec} "
            f"({len(encoder.state_dict())} tensors{left})",
            file=sys.stderr,
        )
