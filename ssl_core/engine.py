"""The training loop: selected components in, a trained encoder and a tracked run out.

The engine knows no method by name. It registers the selected components' run plugins for the
run, asks them (through the step hooks) for data, views, backbone, heads, loss and the target
update, and tells lifecycle hooks (trackers, progress) what happened.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .checkpoint import save_checkpoint, save_weights, write_atomic
from .config import Selection, resolve_device, to_yaml
from .errors import UserError
from .plugins import Plugins


class TrainingError(UserError):
    """Training cannot go on (e.g. a non-finite loss); the message says where and why."""


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_workers(requested: int) -> int:
    if requested >= 0:
        return requested
    return max(0, min(len(os.sched_getaffinity(0)), 8))


@contextmanager
def run_plugins(plugins: Plugins, selection: Selection, config: DictConfig):
    """Register the selected components' run plugins for the duration of a run."""
    names = []
    try:
        for kind, component in selection.items():
            name = f"{kind}:{component.name}"
            plugins.pm.register(component.factory(config), name=name)
            names.append(name)
        yield
    finally:
        for name in names:
            plugins.pm.unregister(name=name)


def _first(plugins: Plugins, hook: str, selection: Selection, kind: str, **kwargs: Any) -> Any:
    result = getattr(plugins.hook, hook)(**kwargs)
    if result is None:
        component = getattr(selection, kind)
        raise RuntimeError(
            f"{hook} returned nothing: {kind} '{component.name}' of plugin "
            f"'{component.provider}' does not implement it"
        )
    return result


def encoder_prefix(model: Any, encoder: Any) -> str:
    """Where ``encoder`` sits in ``model``: its prefix in ``model.state_dict()``."""
    for name, module in model.named_modules():
        if module is encoder:
            return name
    raise RuntimeError("ssl_build_heads returned a model that does not contain the backbone")


def _knn(config: DictConfig, encoder: Any, data: Any, device: Any) -> float | None:
    if not (config.eval.knn and data.labelled):
        return None
    from .knn import knn_eval

    return knn_eval(
        encoder,
        data,
        image_size=config.data.image_size,
        device=device,
        k=config.eval.knn_k,
        temperature=config.eval.knn_temperature,
    )


def train(config: DictConfig, selection: Selection, plugins: Plugins) -> dict[str, float]:
    """Run one pretraining run to the end; returns the final metrics."""
    with run_plugins(plugins, selection, config):
        return _train(config, selection, plugins)


def _train(config: DictConfig, selection: Selection, plugins: Plugins) -> dict[str, float]:
    import torch

    from .loader import build_train_loader, normalize, to_device
    from .optim import build_optimizer, set_lr
    from .run import RunContext

    hook = plugins.hook
    hook.ssl_validate_config(config=config)
    trainer = config.trainer
    seed_everything(trainer.seed)
    device = torch.device(resolve_device(trainer.device))

    data = _first(plugins, "ssl_build_dataset", selection, "dataset", config=config)
    transform = _first(plugins, "ssl_sample_transform", selection, "view_generator", config=config)
    loader = build_train_loader(
        data.train,
        transform,
        batch_size=trainer.batch_size,
        num_workers=default_workers(trainer.num_workers),
        seed=trainer.seed,
        pin_memory=device.type == "cuda",
    )
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * trainer.epochs
    if trainer.max_steps:
        total_steps = min(total_steps, trainer.max_steps)

    backbone = _first(plugins, "ssl_build_backbone", selection, "backbone", config=config)
    model = _first(
        plugins, "ssl_build_heads", selection, "method", config=config, backbone=backbone
    )
    model.to(device)
    memory_format = torch.contiguous_format
    if trainer.channels_last and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        memory_format = torch.channels_last
        model.to(memory_format=memory_format)
    optimizer = build_optimizer(model, config.optim, trainer.batch_size)
    warmup_steps = round(config.optim.warmup_epochs * steps_per_epoch)

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config_path = write_atomic(
        output_dir / "config.yaml", lambda tmp: tmp.write_text(to_yaml(config))
    )
    run = RunContext(
        config=config,
        selection=selection,
        output_dir=output_dir,
        device=device,
        model=model,
        encoder=backbone,
        optimizer=optimizer,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        batch_size=trainer.batch_size,
        data=data,
        encoder_prefix=encoder_prefix(model, backbone),
        plugin_versions=plugins.versions(),
    )
    run.artifacts["config"] = config_path

    final: dict[str, float] = {}
    knn_init = _knn(config, backbone, data, device)
    if knn_init is not None:
        final["knn_top1_init"] = knn_init
        print(f"kNN top-1 at initialization: {knn_init:.4f}", file=sys.stderr)

    hook.ssl_run_start(run=run)
    status = "FAILED"
    try:
        _loop(
            run,
            plugins,
            selection,
            loader,
            warmup_steps,
            memory_format,
            normalize,
            to_device,
            set_lr,
        )
        run.artifacts["checkpoint"] = save_checkpoint(
            output_dir / "checkpoint.pt",
            {
                "format": "ssl_core.checkpoint/1",
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": run.step,
                "epoch": run.epoch,
                "config": to_yaml(config),
                "mlflow_run_id": run.tracking_run_id,
                "encoder_prefix": run.encoder_prefix,
            },
        )
        run.artifacts["encoder"] = save_weights(output_dir / "encoder.safetensors", backbone)
        knn_final = _knn(config, backbone, data, device)
        if knn_final is not None:
            final["knn_top1"] = knn_final
            print(
                f"kNN top-1 after training:    {knn_final:.4f} (at initialization {knn_init:.4f})",
                file=sys.stderr,
            )
        final.update({k: v for k, v in run.extra.items() if isinstance(v, float)})
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        hook.ssl_run_end(run=run, status=status, metrics=final)
    return final


def _loop(
    run, plugins, selection, loader, warmup_steps, memory_format, normalize, to_device, set_lr
) -> None:
    hook = plugins.hook
    model, optimizer, device = run.model, run.optimizer, run.device
    epochs = run.config.trainer.epochs
    while run.epoch < epochs and run.step < run.total_steps:
        model.train()
        started, images, loss_sum, steps = time.perf_counter(), 0, 0.0, 0
        for batch in loader:
            batch = run.batch = to_device(batch, device)
            views = _first(plugins, "ssl_make_views", selection, "view_generator", batch=batch)
            views = [normalize(v).contiguous(memory_format=memory_format) for v in views]
            lr = set_lr(optimizer, run.step, run.total_steps, warmup_steps)
            out = _first(
                plugins,
                "ssl_compute_loss",
                selection,
                "method",
                model=model,
                views=views,
                step=run.step,
            )
            loss = out["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            target_metrics = (
                hook.ssl_update_target(model=model, step=run.step, total_steps=run.total_steps)
                or {}
            )
            run.step += 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"loss became {loss_value} at step {run.step}; try a lower optim.lr"
                )
            metrics = {"loss": loss_value, "lr": lr, **target_metrics}
            metrics.update({k: float(v) for k, v in out.items() if k != "loss"})
            hook.ssl_step_end(run=run, step=run.step, metrics=metrics)
            images += views[0].shape[0]
            loss_sum += loss_value
            steps += 1
            if run.step >= run.total_steps:
                break
        run.epoch += 1
        elapsed = time.perf_counter() - started
        hook.ssl_epoch_end(
            run=run,
            epoch=run.epoch,
            metrics={
                "epoch_loss": loss_sum / max(steps, 1),
                "img_per_s": images / max(elapsed, 1e-9),
            },
        )
        run.extra["final_loss"] = loss_sum / max(steps, 1)
