"""Build a timm model as an SSL encoder: pooled ``[B, D]`` features, optionally a small-image stem.

Loaded only when a run builds its backbone, since it imports torch and timm.
"""

from __future__ import annotations

from pathlib import Path

import timm
from torch import nn

from ssl_core import UserError


def create_backbone(
    name: str, *, small_input: bool = False, drop_path_rate: float = 0.0, pretrained: bool = False
) -> nn.Module:
    """The timm model ``name`` without its classifier: random, or timm's pretrained weights.

    The module maps ``[B, 3, H, W]`` normalized images to pooled ``[B, D]`` features and has
    ``num_features == D``.

    :param small_input: replace a ResNet stem by one for ~32 px images (see
        :func:`use_small_input_stem`).
    :param drop_path_rate: stochastic depth rate, passed to timm only when non-zero so that
        models without stochastic depth still build at the default.
    :param pretrained: load timm's weights for ``name`` (its tag, else the default tag): the
        cached file when there is one (see :mod:`ssl_backbones.pretrained`), else timm
        downloads it. The classifier's weights are left out.
    :raises UserError: when timm cannot build the model or get its weights, or
        ``small_input`` is asked of a model without a plain ResNet stem.
    """
    kwargs: dict = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
    if pretrained:
        from .pretrained import create_kwargs, download_error

        kwargs.update(create_kwargs(name))
    try:
        model = timm.create_model(name, num_classes=0, **{"pretrained": False, **kwargs})
    except Exception as err:
        if pretrained and isinstance(err, OSError):
            # no network, or no such file on the Hub (LocalEntryNotFoundError is an OSError)
            raise download_error(name, err) from err
        # Names reach here after the family matched them, so a failure is about this model
        # with these options; the chained traceback stays available under --debug.
        reason = " ".join(str(err).split()) or type(err).__name__
        raise UserError(f"timm could not build backbone '{name}': {reason}") from err
    if small_input:
        use_small_input_stem(model, name)
    return model


def use_small_input_stem(model: nn.Module, name: str) -> None:
    """Adapt a ResNet to ~32 px images (CIFAR-style), in place.

    The 7×7 stride-2 ``conv1`` becomes a 3×3 stride-1 conv with the same channels and no bias,
    and ``maxpool`` becomes the identity, so a 32 px image reaches the last stage at 4×4
    instead of 1×1 (He et al. 2016, §4.2 CIFAR-10 setup; the usual SSL recipe on CIFAR).

    :raises UserError: when ``model`` has no ``conv1`` Conv2d with a ``maxpool``.
    """
    conv1 = getattr(model, "conv1", None)
    if not isinstance(conv1, nn.Conv2d) or not isinstance(
        getattr(model, "maxpool", None), nn.Module
    ):
        raise UserError(
            f"backbone.small_input=true does not apply to backbone '{name}': small_input "
            "applies to ResNet-style stems (a conv1 and a max-pool, e.g. resnet18, resnet50)"
        )
    stem = nn.Conv2d(
        conv1.in_channels, conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False
    )
    # The initialization timm gives every ResNet conv, so the new stem starts like the old one.
    nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
    model.conv1 = stem.to(device=conv1.weight.device, dtype=conv1.weight.dtype)
    model.maxpool = nn.Identity()


def export_hint(path: Path, name: str, small_input: bool) -> str:
    """How to load an exported encoder of timm model ``name`` with timm, for the terminal."""
    if small_input:
        return (
            f"note: this encoder has the small-input ResNet stem (backbone.small_input=true: "
            f"3x3 stride-1 conv1, no max-pool), which timm.create_model('{name}') lacks, so "
            "timm alone cannot load conv1; load it with\n"
            f"  ssl_core.load_encoder('{path}', backbone='{name}', "
            "overrides={'backbone.small_input': True})"
        )
    return (
        "load it with\n"
        f"  timm.create_model('{name}', pretrained=True, num_classes=0, "
        f"pretrained_cfg_overlay=dict(file='{path}'))"
    )
