"""What the contract's checks run on: tiny configs, images, a tiny backbone, a method built small.

Inputs are tiny (batch 4, 16 px; a method's width options of 256 or more shrunk to 32) so
that every check of every component takes milliseconds, the engine run a second or two.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ssl_core import hookimpl
from ssl_core.config import build_config, component_options
from ssl_core.data.transforms import normalize
from ssl_core.plugins import Plugins
from ssl_core.registry import Component

#: Integer method options at least this large are widths, shrunk to :data:`TINY_WIDTH` so that
#: every method builds and steps in milliseconds.
WIDE = 256
TINY_WIDTH = 32
BATCH = 4
SIZE = 16
#: Side of the images a backbone is checked on.
BACKBONE_SIZE = 32
#: The name under which the checks register their own tiny backbone for engine runs.
TINY_BACKBONE = "ssl-contract-tiny"
#: Core keys of the groups components' options join; an option must not shadow them.
CORE_KEYS = {"backbone": ("name",), "augment": ("name",), "data": ("name", "image_size")}


class ContractError(AssertionError):
    """A component broke the contract; the message is the reason, one line."""


@dataclass(frozen=True)
class Target:
    """A component under check; ``name`` is what it is selected by (a family's sample name)."""

    component: Component
    name: str

    @property
    def label(self) -> str:
        return f"{self.component.kind}:{self.name}"


def expect(condition: bool, reason: str) -> None:
    if not condition:
        raise ContractError(reason)


def shape(tensor: Any) -> str:
    return "[" + ", ".join(str(n) for n in getattr(tensor, "shape", ())) + "]"


class TinyBackbone(nn.Module):
    """Any image size to 8 features: conv, BatchNorm, ReLU, global pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.num_features = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))


class TinyBackbonePlugin:
    """Run plugin of :data:`TINY_BACKBONE`, the backbone of the checks' engine runs."""

    @hookimpl
    def ssl_build_backbone(self) -> nn.Module:
        return TinyBackbone()


# --- building blocks -------------------------------------------------------------------------


def tiny_widths(component: Component) -> list[str]:
    """Overrides shrinking a method's width options (``proj_dim=4096`` → 32)."""
    if component.options is None:
        return []
    return [
        f"{component.name}.{f.name}={TINY_WIDTH}"
        for f in dataclasses.fields(component.options)
        if isinstance(f.default, int) and not isinstance(f.default, bool) and f.default >= WIDE
    ]


def config_for(plugins: Plugins, *args: str) -> tuple[Any, Any]:
    data = ["data=synthetic"] if "synthetic" in plugins.registry.names("dataset") else []
    return build_config(
        ["trainer.device=cpu", *data, f"data.image_size={SIZE}", *args], plugins.registry
    )


def run_plugin(component: Component, config: Any) -> Any:
    """The component's run plugin for ``config``, built as the engine builds it."""
    return component.make(config, component_options(component, config))


def call(run: Any, hook: str, **kwargs: Any) -> Any:
    """``hook`` on a plugin manager holding only the core's defaults and ``run``."""
    import pluggy

    from ssl_core import hookspecs
    from ssl_core.methods import defaults

    pm = pluggy.PluginManager("ssl_core")
    pm.add_hookspecs(hookspecs)
    pm.register(defaults)
    pm.register(run)
    return getattr(pm.hook, hook)(**kwargs)


def images(count: int = BATCH, same: bool = False) -> list[np.ndarray]:
    """``uint8`` images of mixed sizes (or ``count`` copies of one)."""
    rng = np.random.default_rng(0)
    shapes = [(SIZE, SIZE), (SIZE + 7, SIZE + 3), (2 * SIZE, SIZE)]
    made = [rng.integers(0, 256, (*shapes[i % 3], 3), dtype=np.uint8) for i in range(count)]
    return [made[0]] * count if same else made


def make_views(config: Any, selection: Any, same: bool = False) -> list[torch.Tensor]:
    from torch.utils.data import default_collate

    generator = run_plugin(selection.view_generator, config)
    transform = generator.ssl_sample_transform()
    batch = default_collate([{**transform(image), "label": 0} for image in images(same=same)])
    return generator.ssl_make_views(batch=batch)


def info(step: int = 0, total_steps: int = 2) -> Any:
    from ssl_core import StepInfo

    return StepInfo(step=step, epoch=0, steps_per_epoch=total_steps, total_steps=total_steps)


@dataclass
class Built:
    run: Any
    model: nn.Module
    backbone: nn.Module
    views: list[torch.Tensor]


def build_method(plugins: Plugins, target: Target, seed: int = 0) -> Built:
    config, selection = config_for(plugins, f"method={target.name}", *tiny_widths(target.component))
    torch.manual_seed(seed)
    views = [normalize(v) for v in make_views(config, selection)]
    run = run_plugin(selection.method, config)
    backbone = TinyBackbone()
    model = call(run, "ssl_build_heads", backbone=backbone)
    expect(
        isinstance(model, nn.Module),
        f"ssl_build_heads returned {type(model).__name__}; it must return an nn.Module",
    )
    model.train()
    return Built(run, model, backbone, views)


def loss_of(built: Built, step: int = 0) -> torch.Tensor:
    """The loss hook's loss, checked to be what the engine can train on."""
    out = call(built.run, "ssl_compute_loss", model=built.model, views=built.views, info=info(step))
    expect(
        isinstance(out, dict) and "loss" in out,
        f"ssl_compute_loss returned {type(out).__name__}; it must return {{'loss': tensor, ...}}",
    )
    loss = out["loss"]
    expect(
        isinstance(loss, torch.Tensor),
        f"the loss is a {type(loss).__name__}; it must be a scalar tensor",
    )
    expect(loss.shape == (), f"the loss has shape {shape(loss)}; it must be a scalar (shape [])")
    expect(loss.is_floating_point(), f"the loss is {loss.dtype}; it must be a float tensor")
    if not bool(torch.isfinite(loss)):
        raise ContractError(f"the loss is {float(loss.detach())} on tiny inputs; not finite")
    expect(loss.requires_grad, "the loss does not require grad (computed under no_grad?)")
    for key, value in out.items():
        expect(
            isinstance(value, torch.Tensor) and value.shape == (),
            f"extra '{key}' is {type(value).__name__} {shape(value)}; extras are logged as "
            "metrics and must be scalar tensors",
        )
    return loss


def update_target(built: Built, step: int = 0, total_steps: int = 2) -> dict[str, Any]:
    metrics = call(built.run, "ssl_update_target", model=built.model, info=info(step, total_steps))
    expect(
        isinstance(metrics, dict) and all(isinstance(v, float) for v in metrics.values()),
        f"ssl_update_target returned {metrics!r}; it must return {{name: float}}",
    )
    return metrics


@contextlib.contextmanager
def tiny_backbone(plugins: Plugins) -> Iterator[None]:
    """The checks' own tiny backbone registered in ``plugins`` for the body."""
    registry = plugins.registry
    registry.registrar("backbone", "ssl-contract")(TINY_BACKBONE, TinyBackbonePlugin)
    try:
        yield
    finally:
        del registry.components["backbone"][TINY_BACKBONE]


def first_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
