"""The model's memory layout and compilation on its training device."""

from __future__ import annotations

from typing import Any

import torch

#: Image size from which conv weights are kept channels_last on the CPU too (see ``prepare``).
CPU_CHANNELS_LAST_WEIGHTS_FROM = 64


def prepare(model: Any, backbone: Any, config: Any, device: torch.device) -> torch.memory_format:
    """Lay ``model`` out for ``device`` and compile its encoders, in place; returns the memory
    format its inputs should have (channels_last for conv models with
    ``trainer.channels_last``)."""
    trainer = config.trainer
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
    return memory_format
