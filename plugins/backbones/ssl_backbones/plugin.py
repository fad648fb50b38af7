"""Entry point of the backbones plugin: registers the ``timm`` family of encoders.

The family answers ``backbone=NAME`` for every model timm knows (``resnet18``, ``resnet50``,
``vit_tiny_patch16_224``, ...), and is the default backbone (``resnet18``). With
``backbone.pretrained=true`` the encoder starts from timm's pretrained weights for the name and
tag (``resnet50.a1_in1k``), taken from the local cache. Imported whenever
plugins are listed, so it imports neither torch nor timm at module level: timm is loaded the
first time a backbone name is looked up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ssl_core import hookimpl, option

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig


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
    pretrained: bool = option(
        False,
        "start from timm's pretrained weights for the name and tag (resnet50.a1_in1k; a bare "
        "name: timm's default tag), from the Hugging Face cache (HF_HUB_OFFLINE respected)",
    )


class TimmBackbone:
    """The run plugin of the ``timm`` family: builds the named model with timm."""

    def __init__(self, name: str, options: BackboneOptions) -> None:
        self.name, self.options = name, options

    @hookimpl
    def ssl_validate_config(self, config: DictConfig) -> None:
        from .pretrained import check

        check(
            self.name,
            pretrained=self.options.pretrained,
            small_input=self.options.small_input,
            weights=config.backbone.get("weights"),
        )

    @hookimpl
    def ssl_build_backbone(self) -> torch.nn.Module:
        from .timm_backbone import create_backbone

        return create_backbone(
            self.name,
            small_input=self.options.small_input,
            drop_path_rate=self.options.drop_path_rate,
            pretrained=self.options.pretrained,
        )

    @hookimpl
    def ssl_export_hint(self, path: Path) -> str:
        from .timm_backbone import export_hint

        return export_hint(path, self.name, self.options.small_input)


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
        TimmBackbone,
        options=BackboneOptions,
        description="any timm model, e.g. resnet18, resnet50, vit_tiny_patch16_224",
        matches=is_timm_model,
        catalog=timm_models,
        default="resnet18",
    )
