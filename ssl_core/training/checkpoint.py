"""Checkpoint and weight files: written atomically, loaded without running code from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssl_core.files import write_atomic


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """``torch.save`` of plain tensors and containers, loadable with ``weights_only=True``."""
    import torch

    return write_atomic(path, lambda tmp: torch.save(state, tmp))


FORMAT = "ssl_core.checkpoint/1"


def load_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """Load one of our checkpoints without executing code from it.

    ``mmap=True`` maps the tensors instead of reading them, for a caller that reads only the
    small entries (the config, the step).

    :raises UserError: when the file is missing, truncated or corrupt, or not ours.
    """
    import pickle
    import zipfile

    import torch

    from ssl_core.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        # torch's own text suggests weights_only=False, which would run the file's code
        raise UserError(
            f"checkpoint '{path}' is truncated, corrupt or unsafe: it holds objects other than "
            "tensors and plain values, so it is not loaded"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError):
        raise UserError(
            f"checkpoint '{path}' is truncated, corrupt or unsafe: it is not a complete "
            "torch checkpoint file"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"'{path}' is not an ssl_core checkpoint (no '{FORMAT}' format tag)")
    problem = malformed(state)
    if problem:
        raise UserError(
            f"checkpoint '{path}' has the ssl_core tag but is malformed: {problem}; "
            "give another checkpoint"
        )
    return state


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rng_ok(rng: Any) -> bool:
    import torch

    return (
        isinstance(rng, dict)
        and isinstance(rng.get("python"), (list, tuple))
        and isinstance(rng.get("numpy"), (list, tuple))
        and len(rng["numpy"]) == 5
        and isinstance(rng.get("torch"), torch.Tensor)
    )


def malformed(state: dict[str, Any]) -> str | None:
    """What is missing or of the wrong kind in a tagged checkpoint; None when it is whole."""
    import torch
    from omegaconf import DictConfig, OmegaConf

    model = state.get("model")
    if not isinstance(model, dict) or not model:
        return "no model weights ('model')"
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        return "'model' holds something other than named tensors"
    optimizer = state.get("optimizer")
    if not (isinstance(optimizer, dict) and {"state", "param_groups"} <= set(optimizer)):
        return "no optimizer state ('optimizer')"
    for key in ("step", "epoch", "batch_in_epoch"):
        if not _count(state.get(key)):
            return f"'{key}' is {state.get(key)!r}, not a count"
    if not isinstance(state.get("config"), str):
        return "no config ('config')"
    try:
        config = OmegaConf.create(state["config"])
    except Exception:
        return "its config is not YAML"
    if not isinstance(config, DictConfig) or "backbone" not in config:
        return "its config names no backbone"
    if not isinstance(state.get("encoder_prefix", ""), str):
        return "'encoder_prefix' is not a string"
    if not isinstance(state.get("mlflow_run_id"), (str, type(None))):
        return "'mlflow_run_id' is not a string"
    ranks = state.get("rng_ranks") or [state.get("rng")]
    if not (isinstance(ranks, list) and all(_rng_ok(r) for r in ranks)):
        return "no complete random state ('rng')"
    return None


def save_weights(path: Path, module: Any) -> Path:
    """The module's state dict as safetensors (tensors made contiguous, shared ones cloned)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp)))
