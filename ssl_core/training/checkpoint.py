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


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load one of our checkpoints without executing code from it.

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
        state = torch.load(path, map_location="cpu", weights_only=True)
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
    return state


def save_weights(path: Path, module: Any) -> Path:
    """The module's state dict as safetensors (tensors made contiguous, shared ones cloned)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp)))
