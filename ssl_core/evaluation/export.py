"""``ssl export``: the online encoder of a run as a safetensors file that timm loads.

The file is the encoder's own ``state_dict`` (timm's parameter names, no classifier), written
exactly as every run writes ``encoder.safetensors`` and logs it as the MLflow artifact
``encoder/encoder.safetensors``. For a timm backbone::

    timm.create_model("resnet18", pretrained=True, num_classes=0,
                      pretrained_cfg_overlay=dict(file="encoder.safetensors"))

gives the same features as the encoder inside ssl_core. An encoder trained with
``backbone.small_input=true`` has a different ResNet stem (3x3 stride-1 ``conv1``, no
max-pool) that a plain ``timm.create_model`` does not have; :func:`load_encoder` builds that
stem before loading, and ``ssl export`` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_core.errors import UserError

if TYPE_CHECKING:
    import torch

    from ssl_core.plugins import Plugins

OUT_KEY = "out"
DEFAULT_OUT = "encoder.safetensors"


def load_encoder(path: str | Path, backbone: str, *, small_input: bool = False) -> torch.nn.Module:
    """The timm model ``backbone`` (no classifier) with the exported weights at ``path``.

    :param small_input: the encoder was trained with ``backbone.small_input=true``: give the
        ResNet the small-input stem before loading.
    """
    import timm
    import torch
    from safetensors.torch import load_file

    if not small_input:
        return timm.create_model(
            backbone, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, num_classes=0
        )
    model = timm.create_model(backbone, pretrained=False, num_classes=0)
    conv1 = model.conv1
    model.conv1 = torch.nn.Conv2d(
        conv1.in_channels, conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False
    )
    model.maxpool = torch.nn.Identity()
    model.load_state_dict(load_file(str(path)))
    return model


def usage(out: Path, backbone: str, small_input: bool) -> str:
    """How to load the exported file, for the terminal."""
    if small_input:
        return (
            f"note: this encoder has the small-input ResNet stem (backbone.small_input=true: "
            f"3x3 stride-1 conv1, no max-pool), which timm.create_model('{backbone}') lacks, so "
            f"timm alone cannot load conv1; load it with\n"
            f"  ssl_core.export.load_encoder('{out}', '{backbone}', small_input=True)"
        )
    return (
        "load it with\n"
        f"  timm.create_model('{backbone}', pretrained=True, num_classes=0, "
        f"pretrained_cfg_overlay=dict(file='{out}'))"
    )


def export(args: Sequence[str], plugins: Plugins) -> dict[str, Any]:
    """Run ``ssl export run=SOURCE out=FILE [tracking.uri=...]``; returns what was written.

    :raises UserError: on a bad source or an unknown key.
    """
    from ssl_core.evaluation.arguments import SOURCE_KEY, pop_keys, raw_override
    from ssl_core.evaluation.sources import load_source
    from ssl_core.experiments.store import DEFAULT_URI
    from ssl_core.training.checkpoint import save_weights

    special, rest = pop_keys(args, [SOURCE_KEY, OUT_KEY])
    unknown = [a for a in rest if not a.startswith("tracking.uri=")]
    if unknown:
        raise UserError(
            f"ssl export takes run=SOURCE out=FILE tracking.uri=URI; got '{unknown[0]}'"
        )
    uri = raw_override(rest, "tracking.uri", DEFAULT_URI)
    source = load_source(special.get(SOURCE_KEY, ""), plugins, uri)
    out = Path(special.get(OUT_KEY) or DEFAULT_OUT).expanduser()
    if out.is_dir():
        out = out / DEFAULT_OUT
    save_weights(out, source.encoder)
    backbone = str(source.config.backbone.name)
    small_input = bool(source.config.backbone.get("small_input", False))
    component = plugins.registry.get("backbone", backbone)
    params = sum(p.numel() for p in source.encoder.parameters())
    return {
        "out": str(out),
        "source": source.spec,
        "backbone": backbone,
        "small_input": small_input,
        "timm": component.name == "timm",
        "parameters": params,
        "tensors": len(source.encoder.state_dict()),
    }


def describe(result: dict[str, Any]) -> str:
    """What was written and how to load it."""
    head = (
        f"wrote {result['out']}: {result['backbone']} encoder of {result['source']}, "
        f"{result['tensors']} tensors, {result['parameters'] / 1e6:.2f} M parameters"
    )
    if not result["timm"]:
        return f"{head}; the backbone's own state_dict (load_state_dict into the same module)"
    return f"{head}; {usage(Path(result['out']), result['backbone'], result['small_input'])}"
