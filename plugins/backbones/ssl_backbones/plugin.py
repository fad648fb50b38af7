"""Entry point of the backbones plugin: registers the ``timm`` family of encoders.

The family answers ``backbone=NAME`` for every model timm knows (``resnet18``, ``resnet50``,
``vit_tiny_patch16_224``, ...). Imported whenever plugins are listed, so it imports neither
torch nor timm at module level: timm is loaded the first time a backbone name is looked up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from ssl_core import hookimpl, option

if TYPE_CHECKING:
    import torch


@dataclass
class BackboneOptions:
    """Options of the ``timm`` family; they join the ``backbone`` group (``backbone.small_input``)."""

    small_input: bool = option(
        False,
        "for ~32 px images: ResNet stem conv becomes 3x3 stride 1 and its max-pool is removed",
    )
    drop_path_rate: float = option(
        0.0, "stochastic depth rate, passed to timm (models that support it)", min=0.0, max=1.0
    )

    @classmethod
    def from_config(cls, config: Any) -> BackboneOptions:
        """The options in ``config.backbone``; keys it leaves out keep their defaults."""
        group = config.get("backbone") if hasattr(config, "get") else None
        if group is None:
            return cls()
        return cls(**{f.name: group[f.name] for f in fields(cls) if f.name in group})


class TimmBackbone:
    """The run plugin of the ``timm`` family: builds ``config.backbone.name`` with timm."""

    @hookimpl
    def ssl_build_backbone(self, config: Any) -> torch.nn.Module:
        from .timm_backbone import create_backbone

        options = BackboneOptions.from_config(config)
        return create_backbone(
            str(config.backbone.name),
            small_input=options.small_input,
            drop_path_rate=options.drop_path_rate,
        )


def make_run(config: Any) -> TimmBackbone:
    """Factory of the ``timm`` family; the backbone's name and options are read at build time."""
    return TimmBackbone()


def is_timm_model(name: str) -> bool:
    """Whether timm can build ``name`` (a pretrained tag such as ``resnet50.a1_in1k`` is fine)."""
    if not isinstance(name, str) or not name:
        return False
    import timm

    try:
        return timm.is_model(name)
    except Exception:
        # A lookup must answer "no" for any string, never fail the config resolution.
        return False


def timm_models() -> list[str]:
    """Every model name timm knows, for "did you mean" suggestions."""
    import timm

    return timm.list_models()


@hookimpl
def ssl_register_backbones(register: Callable[..., None]) -> None:
    register(
        "timm",
        make_run,
        options=BackboneOptions,
        description="any timm model, e.g. resnet18, resnet50, vit_tiny_patch16_224",
        matches=is_timm_model,
        catalog=timm_models,
    )
