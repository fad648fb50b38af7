"""Where the model trains: the device of this process, and the model put there in the layout
and form the config asks for (SyncBatchNorm, channels_last, compiled encoders)."""

from __future__ import annotations

import sys
import warnings
from typing import Any

from ssl_core.config import resolve_device
from ssl_core.errors import ConfigError, PluginError
from ssl_core.training import distributed
from ssl_core.training.input_size import check_input_size

#: Image size from which conv weights are kept channels_last on the CPU too (see ``place``).
CPU_CHANNELS_LAST_WEIGHTS_FROM = 64


def training_device(trainer_options: Any, world: int) -> Any:
    """This process's device: ``trainer.device``, and under several processes its own GPU."""
    import torch

    device = torch.device(resolve_device(trainer_options.device))
    if world > 1 and device.type == "cuda":
        return torch.device("cuda", distributed.local_rank())
    if world > 1 and device.type != "cpu":
        raise ConfigError(
            f"trainer.device={trainer_options.device} cannot train in several processes; "
            "use cuda or cpu"
        )
    return device


def place(
    model: Any, backbone: Any, config: Any, device: Any, *, world: int, main: bool
) -> tuple[Any, Any]:
    """``model`` on ``device`` as the config asks; returns it and the inputs' memory format."""
    import torch

    trainer = config.trainer
    model.to(device)
    check_input_size(backbone, config.data.image_size, device, str(config.backbone.name))
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
        elif world > 1:
            # The gradient of a 1x1 kernel then comes out with channels_last strides, which for
            # a 1x1 kernel is the same memory as the contiguous parameter's: DDP copies it into
            # its bucket (a plain copy of a few small tensors) but warns about the strides in
            # every process. Nothing to act on, so the warning is not shown.
            warnings.filterwarnings(
                "ignore",
                message="Grad strides do not match bucket view strides",
                category=UserWarning,
            )
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
