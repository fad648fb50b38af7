"""ssl_core: a plugin framework for self-supervised learning.

This package is the whole public surface: plugins import what they use from ``ssl_core`` and
nothing from its submodules, which are free to change. Importing it does not import torch;
the names that need torch are loaded the first time they are used.

For users (see :mod:`ssl_core.api`): :func:`train` (pretrain, returns a :class:`TrainResult`),
:func:`load_encoder` (a run's encoder as a ``torch.nn.Module``), :func:`embed` (embeddings of
images, :class:`Embeddings`), :func:`evaluate`, :func:`export` and :func:`resolve_config`.

For plugin authors:

- :data:`hookimpl` marks hook implementations; :func:`option` declares typed options;
- :class:`UserError`, :class:`ConfigError` (one line, exit 2) and :class:`PluginError`;
- :class:`ImageData`, what a dataset returns; :class:`StepInfo`, what step hooks are told;
- :func:`mlp` (every projector and predictor), :class:`EMA` and :func:`momentum_copy` (target
  networks the core updates), :class:`ParamGroup` and :func:`param_groups` (a method's own
  optimization rules), :func:`forward_views` (several views in one pass, BatchNorm per view);
- :func:`gather`, :func:`rank`, :func:`world_size`: losses over the batch of every process;
- :func:`cosine_tau` and :func:`ema_update_`, for a method that updates its target itself;
- :func:`write_atomic`: a file written whole or not at all (a dataset's cache, say).

For a plugin's tests: :mod:`ssl_core.testing` (``assert_contract("my-plugin")`` runs the
plugin contract's checks, as ``ssl plugins check`` does).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import pluggy

from ssl_core.errors import ConfigError, PluginError, UserError
from ssl_core.options import option

__version__ = "0.1.0"

#: Marker for hook implementations in plugins: ``@hookimpl def ssl_register_methods(register)``.
hookimpl = pluggy.HookimplMarker("ssl_core")

#: Public names loaded on first use: ``name -> module``.
_LAZY = {
    "train": "ssl_core.api",
    "TrainResult": "ssl_core.api",
    "resolve_config": "ssl_core.api",
    "load_encoder": "ssl_core.api",
    "embed": "ssl_core.api",
    "Embeddings": "ssl_core.evaluation.embeddings",
    "evaluate": "ssl_core.api",
    "export": "ssl_core.api",
    "ImageData": "ssl_core.data.image_data",
    "StepInfo": "ssl_core.training.run",
    "mlp": "ssl_core.methods.heads",
    "EMA": "ssl_core.methods.targets",
    "momentum_copy": "ssl_core.methods.targets",
    "cosine_tau": "ssl_core.methods.targets",
    "ema_update_": "ssl_core.methods.targets",
    "ParamGroup": "ssl_core.methods.param_groups",
    "param_groups": "ssl_core.methods.param_groups",
    "forward_views": "ssl_core.methods.per_view_batchnorm",
    "gather": "ssl_core.training.distributed",
    "rank": "ssl_core.training.distributed",
    "world_size": "ssl_core.training.distributed",
    "write_atomic": "ssl_core.files",
}

__all__ = [
    "ConfigError",
    "PluginError",
    "UserError",
    "__version__",
    "hookimpl",
    "option",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ssl_core' has no attribute '{name}'")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
