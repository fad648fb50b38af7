"""The plugin contract, checked on every registered method, backbone and view generator.

Parametrized over what the installed plugins register, plus the example plugin package
(loaded from ``examples/ssl-plugin-example`` when it is not installed), so a new plugin is
checked by adding it, with no test of its own. See docs/plugins.md for the contract.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

from ssl_core import StepInfo
from ssl_core.config import build_config, component_options
from ssl_core.data.transforms import normalize
from ssl_core.plugins import Plugins, get_plugins

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ssl-plugin-example"
#: Names tried for a backbone family (a component answering for many names, like timm's).
FAMILY_SAMPLES = ("test_resnet", "resnet18")
#: Integer options at least this large are widths; they are shrunk to :data:`TINY_WIDTH` so
#: that every method builds and steps in milliseconds.
WIDE = 256
TINY_WIDTH = 32
BATCH = 4
SIZE = 16


def load_plugins() -> Plugins:
    """Installed plugins, plus the example package from its folder if it is not installed."""
    plugins = get_plugins()
    if plugins.pm.has_plugin("example"):
        return plugins
    if str(EXAMPLE) not in sys.path:
        sys.path.append(str(EXAMPLE))
    from ssl_plugin_example import plugin as example

    return get_plugins(extra=[("example", example)])


PLUGINS = load_plugins()
REGISTRY = PLUGINS.registry


def family_sample(component) -> str | None:
    return next((name for name in FAMILY_SAMPLES if component.matches(name)), None)


def backbone_names() -> list[str]:
    names = []
    for component in REGISTRY.components["backbone"].values():
        names.append(family_sample(component) if component.is_family else component.name)
    return [name for name in names if name is not None]


def tiny_widths(method: str) -> list[str]:
    """Overrides shrinking the method's width options (``proj_dim=4096`` → 32)."""
    options = REGISTRY.get("method", method).options
    if options is None:
        return []
    return [
        f"{method}.{f.name}={TINY_WIDTH}"
        for f in dataclasses.fields(options)
        if isinstance(f.default, int) and not isinstance(f.default, bool) and f.default >= WIDE
    ]


def config_for(*args: str):
    return build_config(
        ["trainer.device=cpu", "data=synthetic", f"data.image_size={SIZE}", *args], REGISTRY
    )


def images(count: int = BATCH) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = [(SIZE, SIZE), (SIZE + 7, SIZE + 3), (2 * SIZE, SIZE)]
    return [
        rng.integers(0, 256, (*shapes[i % len(shapes)], 3), dtype=np.uint8) for i in range(count)
    ]


def run_plugin(component, config):
    """The component's run plugin for ``config``, built as the engine builds it."""
    return component.make(config, component_options(component, config))


def make_views(config, selection) -> list[torch.Tensor]:
    generator = run_plugin(selection.view_generator, config)
    transform = generator.ssl_sample_transform()
    batch = default_collate([{**transform(image), "label": 0} for image in images()])
    return generator.ssl_make_views(batch=batch)


def info(step: int = 0, total_steps: int = 2) -> StepInfo:
    return StepInfo(step=step, epoch=0, steps_per_epoch=total_steps, total_steps=total_steps)


def compute_loss(built, step: int = 0):
    """The loss hook as the engine calls it (through the plugin manager, for subset hookimpls)."""
    return call(
        built.run, "ssl_compute_loss", model=built.model, views=built.views, info=info(step)
    )


def update_target(built, step: int = 0, total_steps: int = 2):
    """The target update as the engine gets it: the method's own, else the core's."""
    return call(built.run, "ssl_update_target", model=built.model, info=info(step, total_steps))


def call(run, hook: str, **kwargs):
    """Call ``hook`` on a plugin manager holding only the core defaults and ``run``."""
    import pluggy

    from ssl_core import hookspecs
    from ssl_core.methods import defaults

    pm = pluggy.PluginManager("ssl_core")
    pm.add_hookspecs(hookspecs)
    pm.register(defaults)
    pm.register(run)
    return getattr(pm.hook, hook)(**kwargs)


class TinyBackbone(nn.Module):
    """Any image size to 8 features: conv, BatchNorm, ReLU, global pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.num_features = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))


# --- methods ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Built:
    run: Any
    model: nn.Module
    backbone: nn.Module
    views: list[torch.Tensor]
    config: Any


def build_method(method: str, seed: int = 0) -> Built:
    config, selection = config_for(f"method={method}", *tiny_widths(method))
    torch.manual_seed(seed)
    views = [normalize(v) for v in make_views(config, selection)]
    run = run_plugin(selection.method, config)
    backbone = TinyBackbone()
    model = call(run, "ssl_build_heads", backbone=backbone)
    model.train()
    return Built(run, model, backbone, views, config)


METHODS = REGISTRY.names("method")


def test_every_builtin_method_is_checked():
    assert {"byol", "simsiam", "mocov3", "simclr", "dino", "barlow_twins"} <= set(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_method_model_holds_the_backbone_object(method):
    built = build_method(method)
    assert any(module is built.backbone for module in built.model.modules())


@pytest.mark.parametrize("method", METHODS)
def test_method_loss_is_a_finite_scalar_with_scalar_extras(method):
    built = build_method(method)
    out = compute_loss(built)
    loss = out["loss"]
    assert isinstance(loss, torch.Tensor) and loss.shape == () and loss.is_floating_point()
    assert torch.isfinite(loss) and loss.requires_grad
    for key, value in out.items():
        # Extras are logged as metrics: scalar tensors, like the loss.
        assert isinstance(value, torch.Tensor) and value.shape == (), key


@pytest.mark.parametrize("method", METHODS)
def test_method_target_gets_no_gradient_and_the_online_network_does(method):
    built = build_method(method)
    frozen = [p for p in built.model.parameters() if not p.requires_grad]
    out = compute_loss(built)
    out["loss"].backward()
    assert all(p.grad is None for p in frozen)
    assert all(p.grad is not None for p in built.backbone.parameters())


@pytest.mark.parametrize("method", METHODS)
def test_method_training_step_changes_the_online_weights_only(method):
    built = build_method(method)
    model = built.model
    frozen = [p for p in model.parameters() if not p.requires_grad]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    online_before = copy.deepcopy(built.backbone.state_dict())
    frozen_before = [p.detach().clone() for p in frozen]

    out = compute_loss(built)
    optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    optimizer.step()
    for before, param in zip(frozen_before, frozen, strict=True):
        assert torch.equal(before, param)  # the optimizer never touches the target
    metrics = update_target(built)
    assert isinstance(metrics, dict) and all(isinstance(v, float) for v in metrics.values())

    after = built.backbone.state_dict()
    changed = [k for k, v in online_before.items() if not torch.equal(v, after[k])]
    assert "conv.weight" in changed


@pytest.mark.parametrize("method", METHODS)
def test_method_state_dict_round_trips(method):
    built = build_method(method)
    out = compute_loss(built)
    out["loss"].backward()
    update_target(built)
    state = built.model.state_dict()

    fresh = build_method(method, seed=1).model
    fresh.load_state_dict(state, strict=True)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
    x = torch.randn(2, 3, SIZE, SIZE)
    built.model.eval()
    fresh.eval()
    encoder = next(m for m in fresh.modules() if isinstance(m, TinyBackbone))
    torch.testing.assert_close(encoder(x), built.backbone(x))


@pytest.mark.parametrize("method", METHODS)
def test_method_trains_through_the_engine(method, tmp_path):
    from ssl_core.training.engine import train

    config, selection = config_for(
        f"method={method}",
        *tiny_widths(method),
        "backbone=test_resnet",
        "data.num_samples=24",
        "trainer.batch_size=4",
        "trainer.epochs=1",
        "trainer.num_workers=0",
        "eval.knn=false",
        "tracking.enabled=false",
        f"output_dir={tmp_path}/run",
    )
    final = train(config, selection, PLUGINS)
    assert np.isfinite(final["final_loss"])
    assert (tmp_path / "run" / "encoder.safetensors").exists()


# --- backbones -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", backbone_names())
def test_backbone_gives_num_features_and_round_trips(name):
    config, selection = config_for("method=byol", f"backbone={name}")
    build = run_plugin(selection.backbone, config).ssl_build_backbone
    torch.manual_seed(0)
    backbone = build()
    assert isinstance(backbone.num_features, int) and backbone.num_features > 0
    backbone.eval()
    x = normalize(torch.rand(2, 3, 32, 32))
    features = backbone(x)
    assert features.shape == (2, backbone.num_features)
    assert torch.isfinite(features).all()
    torch.manual_seed(1)
    other = build()
    other.load_state_dict(backbone.state_dict(), strict=True)
    other.eval()
    torch.testing.assert_close(other(x), features)


# --- view generators -------------------------------------------------------------------------


def method_taking(generator: str) -> str:
    """A registered method that takes as many views as ``generator`` makes by default."""
    component = REGISTRY.get("view_generator", generator)
    made = component.views_made(component.options() if component.options else None)
    for method in METHODS:
        views = REGISTRY.get("method", method).views
        if made is None or views is None or views[0] <= made <= (views[1] or made):
            return method
    raise AssertionError(f"no method takes the {made} views of {generator}")


@pytest.mark.parametrize("name", REGISTRY.names("view_generator"))
def test_view_generator_makes_unit_range_views_from_any_image(name):
    config, selection = config_for(f"method={method_taking(name)}", f"augment={name}")
    generator = run_plugin(selection.view_generator, config)
    transform = generator.ssl_sample_transform()
    pickle.loads(pickle.dumps(transform))  # it runs in DataLoader workers
    sample = transform(images(1)[0])
    # the hookspec's contract: a dict of tensors or lists of tensors, under keys of its own
    assert sample and all(
        isinstance(value, torch.Tensor)
        or (isinstance(value, list) and all(isinstance(t, torch.Tensor) for t in value))
        for value in sample.values()
    )
    views = make_views(config, selection)
    assert len(views) >= 2
    assert views[0].shape == views[1].shape == (BATCH, 3, SIZE, SIZE)
    for view in views:
        assert view.dtype == torch.float32 and view.ndim == 4
        assert view.shape[:2] == (BATCH, 3)
        assert 0.0 <= view.min() and view.max() <= 1.0
    assert not torch.equal(views[0], views[1])


# --- lifecycle -------------------------------------------------------------------------------


def test_validate_config_stops_a_run_before_any_work(tmp_path):
    from ssl_core import UserError, hookimpl
    from ssl_core.training.engine import train

    class Refuse:
        @hookimpl
        def ssl_validate_config(self, config):
            if config.trainer.batch_size < 8:
                raise UserError(f"trainer.batch_size={config.trainer.batch_size}; needs >= 8")

    plugins = get_plugins(extra=[("refuse", Refuse())])
    config, selection = build_config(
        [
            "method=byol",
            "backbone=test_resnet",
            "data=synthetic",
            "trainer.batch_size=4",
            "tracking.enabled=false",
            f"output_dir={tmp_path}/run",
        ],
        plugins.registry,
    )
    with pytest.raises(UserError, match="needs >= 8"):
        train(config, selection, plugins)
    assert not (tmp_path / "run").exists()
