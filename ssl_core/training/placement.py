"""Where and how the model lives for training: device, SyncBatchNorm, memory format, compile.

The method's model is built on the CPU and moved to the device; :func:`place` adapts it in place, so the
backbone object the engine keeps (for kNN, export and the monitors) stays the one being
trained and state-dict keys do not change.
"""

from __future__ import annotations

import sys
from typing import Any

from ssl_core.errors import PluginError

#: Image size from which conv weights are kept channels_last on the CPU too (see ``place``).
CPU_CHANNELS_LAST_WEIGHTS_FROM = 64


def place(model: Any, backbone: Any, device: Any, config: Any, world: int, main: bool) -> Any:
    """``model`` (already on ``device``) ready to train; returns ``(model, memory_format)``.

    With several processes on CUDA and ``trainer.sync_bn``, BatchNorm layers become
    SyncBatchNorm; ``trainer.channels_last`` puts inputs (and, except for small images on the
    CPU, conv weights) in channels-last layout; ``trainer.compile`` compiles every module of
    the backbone's type in place.
    """
    import torch

    trainer = config.trainer
    if world > 1 and trainer.sync_bn and device.type == "cuda":
        # Replaces BatchNorm layers inside their parents: the backbone object stays the one
        # the model holds, and the state dict keeps its keys.
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif world > 1 and trainer.sync_bn and main:
        print(
            "warning: trainer.sync_bn needs CUDA (torch has no SyncBatchNorm on the CPU); "
            "BatchNorm statistics stay per process",
            file=sys.stderr,
        )
    memory_format = torch.contiguous_format
    if trainer.channels_last and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        memory_format = torch.channels_last
        # The inputs always; the weights too, except for small images on the CPU: there
        # oneDNN's weight gradients come out contiguous, and copying each into a
        # channels_last parameter's layout costs more than the layout saves below ~64 px
        # (docs/performance.md has the figures).
        if device.type != "cpu" or config.data.image_size >= CPU_CHANNELS_LAST_WEIGHTS_FROM:
            model.to(memory_format=memory_format)
    if trainer.compile:
        # In place (nn.Module.compile): parameter names and state dict keys do not change,
        # and the encoder object that evaluation and export use is the one being trained.
        for module in model.modules():
            if type(module) is type(backbone):
                module.compile()
    return model, memory_format


def encoder_prefix(model: Any, encoder: Any) -> str:
    """Where ``encoder`` sits in ``model``: its prefix in ``model.state_dict()``."""
    for name, module in model.named_modules():
        if module is encoder:
            return name
    raise PluginError("ssl_build_heads returned a model that does not contain the backbone")
