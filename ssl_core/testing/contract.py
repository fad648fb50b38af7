"""The checks of the plugin contract, one function per check, each on tiny inputs.

A check takes a :class:`Target` (a registered component, with the name a family is tried
under) and raises :class:`ContractError` with the reason when the component breaks the
contract; any other exception fails the check too, its first line the reason.
``docs/plugins.md`` ("Testing a plugin") says what each check holds the component to; the
inputs come from :mod:`ssl_core.testing.tiny`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import math
import pickle
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_core.data.transforms import normalize
from ssl_core.options import check_value
from ssl_core.plugins import Plugins
from ssl_core.testing.tiny import (
    BACKBONE_SIZE,
    BATCH,
    CORE_KEYS,
    SIZE,
    TINY_BACKBONE,
    ContractError,
    Target,
    TinyBackbone,
    build_method,
    config_for,
    expect,
    first_line,
    images,
    loss_of,
    make_views,
    run_plugin,
    shape,
    tiny_backbone,
    tiny_widths,
    update_target,
)

# --- every kind ------------------------------------------------------------------------------


def check_options_typed(plugins: Plugins, target: Target) -> None:
    """The options dataclass is an OmegaConf schema of ``option`` fields within their bounds."""
    from omegaconf import OmegaConf

    options = target.component.options
    if options is None:
        return
    expect(dataclasses.is_dataclass(options), f"options={options!r} is not a dataclass")
    try:
        hints = typing.get_type_hints(options)
        OmegaConf.structured(options)
    except Exception as exc:
        raise ContractError(
            f"{options.__name__} is not a typed config schema: {first_line(exc)}"
        ) from None
    for field in dataclasses.fields(options):
        where = f"{options.__name__}.{field.name}"
        expect(field.name in hints, f"{where} has no type annotation")
        expect(
            bool(field.metadata.get("help")),
            f"{where} has no help text; declare it with ssl_core.option(default, help)",
        )
        expect(
            field.name not in CORE_KEYS.get(target.component.group, ()),
            f"{where} shadows the core key {target.component.group}.{field.name}",
        )
        default = field.default
        if default is not dataclasses.MISSING:
            problem = check_value(f"{target.component.group}.{field.name}", default, field)
            expect(problem is None, f"the default of {where} breaks its own bounds: {problem}")


# --- methods ---------------------------------------------------------------------------------


def check_holds_backbone(plugins: Plugins, target: Target) -> None:
    built = build_method(plugins, target)
    expect(
        any(module is built.backbone for module in built.model.modules()),
        "the model from ssl_build_heads does not hold the backbone object it was given "
        "(a copy?); the engine evaluates and exports that object",
    )


def check_loss(plugins: Plugins, target: Target) -> None:
    loss_of(build_method(plugins, target))


def check_no_gradient_into_targets(plugins: Plugins, target: Target) -> None:
    built = build_method(plugins, target)
    frozen = {n: p for n, p in built.model.named_parameters() if not p.requires_grad}
    loss_of(built).backward()
    leaked = [n for n, p in frozen.items() if p.grad is not None]
    if leaked:
        raise ContractError(f"a parameter with requires_grad=False got a gradient: {leaked[0]}")
    starved = [n for n, p in built.backbone.named_parameters() if p.grad is None]
    if starved:
        raise ContractError(f"the encoder got no gradient: {starved[0]}")


def check_step_moves_encoder(plugins: Plugins, target: Target) -> None:
    built = build_method(plugins, target)
    model = built.model
    frozen = [(n, p) for n, p in model.named_parameters() if not p.requires_grad]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    online = copy.deepcopy(built.backbone.state_dict())
    frozen_before = [p.detach().clone() for _, p in frozen]
    loss = loss_of(built)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    for (name, param), before in zip(frozen, frozen_before, strict=True):
        expect(torch.equal(before, param), f"the optimizer step changed target '{name}'")
    update_target(built)
    after = built.backbone.state_dict()
    expect(
        not torch.equal(online["conv.weight"], after["conv.weight"]),
        "an optimizer step and the target update left the encoder's weights unchanged",
    )


def check_state_dict_round_trip(plugins: Plugins, target: Target) -> None:
    built = build_method(plugins, target)
    loss_of(built).backward()
    update_target(built)
    state = built.model.state_dict()
    fresh = build_method(plugins, target, seed=1).model
    try:
        fresh.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ContractError(
            f"the state dict does not load into a fresh model: {first_line(exc)}"
        ) from None
    for key, value in fresh.state_dict().items():
        expect(torch.equal(value, state[key]), f"'{key}' differs after loading the state dict")
    x = torch.randn(2, 3, SIZE, SIZE)
    built.model.eval()
    fresh.eval()
    encoder = next(m for m in fresh.modules() if isinstance(m, TinyBackbone))
    expect(
        torch.allclose(encoder(x), built.backbone(x), atol=1e-6),
        "the reloaded model's encoder computes other features",
    )


def check_engine_run(plugins: Plugins, target: Target) -> None:
    from ssl_core.training.engine import train

    with tiny_backbone(plugins), tempfile.TemporaryDirectory(prefix="ssl-contract-") as tmp:
        config, selection = config_for(
            plugins,
            f"method={target.name}",
            *tiny_widths(target.component),
            f"backbone={TINY_BACKBONE}",
            "data.num_samples=24",
            "trainer.batch_size=4",
            "trainer.epochs=1",
            "trainer.num_workers=0",
            "eval.knn=false",
            "tracking.enabled=false",
            f"output_dir={tmp}/run",
        )
        with contextlib.redirect_stderr(io.StringIO()):  # progress lines
            final = train(config, selection, plugins)
        loss = final.get("final_loss", math.nan)
        expect(math.isfinite(loss), f"a run of a few steps ended with the loss {loss}")
        expect(
            (Path(tmp) / "run" / "encoder.safetensors").exists(),
            "a run ended without writing encoder.safetensors",
        )


# --- backbones -------------------------------------------------------------------------------


def build_backbone(plugins: Plugins, target: Target, seed: int) -> nn.Module:
    method = plugins.registry.names("method")
    expect(bool(method), "no method is installed; a backbone is checked inside a run's config")
    config, selection = config_for(plugins, f"method={method[0]}", f"backbone={target.name}")
    torch.manual_seed(seed)
    backbone = run_plugin(selection.backbone, config).ssl_build_backbone()
    expect(
        isinstance(backbone, nn.Module),
        f"ssl_build_backbone returned {type(backbone).__name__}; it must return an nn.Module",
    )
    features = getattr(backbone, "num_features", None)
    expect(
        isinstance(features, int) and not isinstance(features, bool) and features > 0,
        f"num_features is {features!r}; it must be a positive int (the output width)",
    )
    return backbone.eval()


def check_backbone_features(plugins: Plugins, target: Target) -> None:
    backbone = build_backbone(plugins, target, seed=0)
    x = normalize(torch.rand(2, 3, BACKBONE_SIZE, BACKBONE_SIZE))
    features = backbone(x)
    expect(
        isinstance(features, torch.Tensor) and features.shape == (2, backbone.num_features),
        f"the backbone gives {shape(features)} for 2 images; it must give "
        f"[2, num_features] = [2, {backbone.num_features}]",
    )
    expect(bool(torch.isfinite(features).all()), "the backbone gives non-finite features")


def check_backbone_round_trip(plugins: Plugins, target: Target) -> None:
    backbone = build_backbone(plugins, target, seed=0)
    other = build_backbone(plugins, target, seed=1)
    try:
        other.load_state_dict(backbone.state_dict(), strict=True)
    except Exception as exc:
        raise ContractError(
            f"the state dict does not load into a fresh backbone: {first_line(exc)}"
        ) from None
    x = normalize(torch.rand(2, 3, BACKBONE_SIZE, BACKBONE_SIZE))
    expect(
        torch.allclose(other.eval()(x), backbone(x), atol=1e-5),
        "the reloaded backbone computes other features",
    )


# --- view generators -------------------------------------------------------------------------


def generator_config(plugins: Plugins, target: Target) -> tuple[Any, Any]:
    """A run config with the generator and a method that takes its number of views."""
    component = target.component
    made = component.views_made(component.options() if component.options else None)
    registry = plugins.registry
    for method in registry.names("method"):
        views = registry.get("method", method).views
        if made is None or views is None or views[0] <= made <= (views[1] or made):
            return config_for(plugins, f"method={method}", f"augment={target.name}")
    raise ContractError(f"no installed method takes the {made} views it makes")


def check_transform_pickles(plugins: Plugins, target: Target) -> None:
    config, selection = generator_config(plugins, target)
    transform = run_plugin(selection.view_generator, config).ssl_sample_transform()
    try:
        pickle.loads(pickle.dumps(transform))
    except Exception as exc:
        raise ContractError(
            f"the sample transform does not pickle (it runs in DataLoader workers): "
            f"{first_line(exc)}"
        ) from None
    sample = transform(images(1)[0])
    expect(
        isinstance(sample, dict)
        and bool(sample)
        and all(
            isinstance(v, torch.Tensor)
            or (isinstance(v, list) and all(isinstance(t, torch.Tensor) for t in v))
            for v in sample.values()
        ),
        f"the sample transform returned {type(sample).__name__}; it must return a non-empty "
        "dict of tensors or lists of tensors",
    )


def check_views_in_range(plugins: Plugins, target: Target) -> None:
    config, selection = generator_config(plugins, target)
    views = make_views(config, selection)
    if not (isinstance(views, list) and len(views) >= 2):
        made = len(views) if isinstance(views, (list, tuple)) else type(views).__name__
        raise ContractError(f"ssl_make_views returned {made} views; it must return a list of 2+")
    for i, view in enumerate(views):
        expect(
            isinstance(view, torch.Tensor) and view.ndim == 4 and view.shape[:2] == (BATCH, 3),
            f"view {i} has shape {shape(view)}; views are [B, 3, H, W] with B = {BATCH}",
        )
        expect(view.dtype == torch.float32, f"view {i} is {view.dtype}; views are float32")
        low, high = float(view.min()), float(view.max())
        expect(
            0.0 <= low and high <= 1.0,
            f"view {i} has values in [{low:.3g}, {high:.3g}]; views must be in [0, 1] (the "
            "engine normalizes them)",
        )
    expected = (BATCH, 3, SIZE, SIZE)
    expect(
        views[0].shape == views[1].shape == expected,
        f"the first two views are {shape(views[0])} and {shape(views[1])}; they must be "
        f"[B, 3, S, S] = {list(expected)} with S = data.image_size",
    )


def check_views_per_sample(plugins: Plugins, target: Target) -> None:
    config, selection = generator_config(plugins, target)
    torch.manual_seed(0)
    views = make_views(config, selection)
    expect(not torch.equal(views[0], views[1]), "the first two views are equal")
    torch.manual_seed(0)
    same = make_views(config, selection, same=True)[0]
    expect(
        any(not torch.equal(same[0], same[i]) for i in range(1, same.shape[0])),
        "a batch of one image repeated gives the same view for every image; draw the random "
        "parameters per sample, not per batch",
    )


# --- the table of checks ---------------------------------------------------------------------

Check = Callable[[Plugins, Target], None]

#: The checks of each kind, in the order they run and print.
CHECKS: dict[str, list[tuple[str, Check]]] = {
    "method": [
        ("options typed", check_options_typed),
        ("holds the backbone", check_holds_backbone),
        ("loss is a finite scalar", check_loss),
        ("no gradient into targets", check_no_gradient_into_targets),
        ("a step moves the encoder", check_step_moves_encoder),
        ("state dict round trip", check_state_dict_round_trip),
        ("runs through the engine", check_engine_run),
    ],
    "backbone": [
        ("options typed", check_options_typed),
        ("features [B, num_features]", check_backbone_features),
        ("state dict round trip", check_backbone_round_trip),
    ],
    "view_generator": [
        ("options typed", check_options_typed),
        ("transform pickles", check_transform_pickles),
        ("views in range", check_views_in_range),
        ("views drawn per sample", check_views_per_sample),
    ],
    "dataset": [("options typed", check_options_typed)],
}
