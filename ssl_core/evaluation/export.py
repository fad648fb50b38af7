"""``ssl export``: the online encoder of a run as a safetensors file.

The file is the encoder's own ``state_dict`` (for a timm backbone, timm's parameter names and
no classifier), written exactly as every run writes ``encoder.safetensors`` and logs it as the
MLflow artifact ``encoder/encoder.safetensors``. How to load it outside ssl_core is the
backbone plugin's to say (``ssl_export_hint``); inside, :func:`ssl_core.load_encoder` rebuilds
the run's backbone and loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssl_core.errors import UserError

if TYPE_CHECKING:
    from ssl_core.plugins import Plugins

OUT_KEY = "out"
DEFAULT_OUT = "encoder.safetensors"


def export(args: Sequence[str], plugins: Plugins) -> dict[str, Any]:
    """Run ``ssl export run=SOURCE out=FILE [tracking.uri=...]``; returns what was written.

    :raises UserError: on a bad source or an unknown key.
    """
    from ssl_core.evaluation.arguments import SOURCE_KEY, pop_keys, raw_override
    from ssl_core.evaluation.sources import load_source
    from ssl_core.experiments.store import DEFAULT_URI
    from ssl_core.paths import check_writable_file
    from ssl_core.training.checkpoint import save_weights

    special, rest = pop_keys(args, [SOURCE_KEY, OUT_KEY])
    unknown = [a for a in rest if not a.startswith("tracking.uri=")]
    if unknown:
        raise UserError(
            f"ssl export takes run=SOURCE out=FILE tracking.uri=URI; got '{unknown[0]}'"
        )
    uri = raw_override(rest, "tracking.uri", DEFAULT_URI)
    out = Path(special.get(OUT_KEY) or DEFAULT_OUT).expanduser()
    if out.is_dir():
        out = out / DEFAULT_OUT
    check_writable_file(out, OUT_KEY)  # before the encoder is loaded
    source = load_source(special.get(SOURCE_KEY, ""), plugins, uri)
    try:
        save_weights(out, source.encoder)
    except OSError as exc:
        raise UserError(f"cannot write out={out}: {exc.strerror or exc}") from None
    backbone = str(source.config.backbone.name)
    component = plugins.registry.get("backbone", backbone)
    with plugins.running(source.config, [component]):
        hint = plugins.hook.ssl_export_hint(path=out)
    return {
        "out": str(out),
        "source": source.spec,
        "backbone": backbone,
        "hint": hint or "the backbone's own state_dict (load_state_dict into the same module)",
        "parameters": sum(p.numel() for p in source.encoder.parameters()),
        "tensors": len(source.encoder.state_dict()),
    }


def describe(result: dict[str, Any]) -> str:
    """What was written and how to load it."""
    return (
        f"wrote {result['out']}: {result['backbone']} encoder of {result['source']}, "
        f"{result['tensors']} tensors, {result['parameters'] / 1e6:.2f} M parameters; "
        f"{result['hint']}"
    )
