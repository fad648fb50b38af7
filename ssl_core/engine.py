"""The training loop: selected components in, a trained encoder and a tracked run out.

The engine knows no method by name. It registers the selected components' run plugins for the
run, asks them (through the step hooks) for data, views, backbone, heads, loss and the target
update, and tells lifecycle hooks (trackers, progress) what happened. Checkpoints are written
atomically every ``trainer.checkpoint_every`` steps, at epoch ends and at the end; a run
continues from one with ``resume=auto`` or ``resume=PATH``.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from .config import Selection, resolve_device, to_yaml
from .errors import RunFailed, RunInterrupted
from .plugins import Plugins


class StopRequest:
    """Set by the first SIGINT/SIGTERM; the loop stops cleanly after the current step."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after this step and writing a checkpoint "
            "(Ctrl-C again to stop at once)",
            file=sys.stderr,
        )


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a :class:`StopRequest` while training (main thread only)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, request.handle)
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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
def run_plugins(plugins: Plugins, selection: Selection, config: DictConfig) -> Iterator[None]:
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


def train(config: DictConfig, selection: Selection, plugins: Plugins) -> dict[str, float]:
    """Run one pretraining run to the end (or continue one); returns the final metrics."""
    with run_plugins(plugins, selection, config), stop_on_signals() as stop:
        return Trainer(config, selection, plugins, stop).fit()


class Trainer:
    """One run: builds everything through the hooks, then loops, checkpoints and reports."""

    def __init__(
        self, config: DictConfig, selection: Selection, plugins: Plugins, stop: StopRequest
    ) -> None:
        self.config, self.selection, self.plugins, self.stop = config, selection, plugins, stop
        self.hook = plugins.hook
        self.last_checkpoint: Path | None = None
        self.nonfinite = 0

    # --- set-up -----------------------------------------------------------------------------

    def _build(self) -> None:
        import torch

        from .checkpoint import load_checkpoint, write_atomic
        from .loader import build_train_loader
        from .optim import build_optimizer
        from .resume import check_same_math, find_resume
        from .run import RunContext

        config, trainer, plugins, selection = (
            self.config,
            self.config.trainer,
            self.plugins,
            self.selection,
        )
        self.hook.ssl_validate_config(config=config)
        resume_from = find_resume(config)
        self.resumed = load_checkpoint(resume_from) if resume_from is not None else None
        if self.resumed is not None:
            check_same_math(config, self.resumed["config"], resume_from)
        torch.use_deterministic_algorithms(trainer.deterministic)
        seed_everything(trainer.seed)
        device = torch.device(resolve_device(trainer.device))

        data = _first(plugins, "ssl_build_dataset", selection, "dataset", config=config)
        transform = _first(
            plugins, "ssl_sample_transform", selection, "view_generator", config=config
        )
        self.loader = build_train_loader(
            data.train,
            transform,
            batch_size=trainer.batch_size,
            num_workers=default_workers(trainer.num_workers),
            seed=trainer.seed,
            pin_memory=device.type == "cuda",
        )
        steps_per_epoch = self.loader.batch_sampler.batches_per_epoch
        total_steps = steps_per_epoch * trainer.epochs
        if trainer.max_steps:
            total_steps = min(total_steps, trainer.max_steps)

        backbone = _first(plugins, "ssl_build_backbone", selection, "backbone", config=config)
        model = _first(
            plugins, "ssl_build_heads", selection, "method", config=config, backbone=backbone
        )
        model.to(device)
        self.memory_format = torch.contiguous_format
        if trainer.channels_last and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
            self.memory_format = torch.channels_last
            model.to(memory_format=self.memory_format)
        optimizer = build_optimizer(model, config.optim, trainer.batch_size)
        self.warmup_steps = round(config.optim.warmup_epochs * steps_per_epoch)

        output_dir = Path(config.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        self.run = run = RunContext(
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
        run.artifacts["config"] = write_atomic(
            output_dir / "config.yaml", lambda tmp: tmp.write_text(to_yaml(config))
        )
        if self.resumed is not None:
            self._restore(self.resumed, resume_from)

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        from .resume import set_rng_state

        run = self.run
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.step, run.epoch = state["step"], state["epoch"]
        run.extra["batch_in_epoch"] = state["batch_in_epoch"]
        run.tracking_run_id = state.get("mlflow_run_id")
        run.resumed_from = path
        self.nonfinite = state.get("nonfinite", 0)
        self.last_checkpoint = path
        set_rng_state(state["rng"])
        print(f"resuming from {path} at step {run.step}/{run.total_steps}", file=sys.stderr)

    # --- checkpoints ------------------------------------------------------------------------

    def save(self) -> Path:
        """Write a step checkpoint atomically and drop the oldest beyond ``keep_checkpoints``."""
        from .checkpoint import FORMAT, save_checkpoint
        from .resume import checkpoint_path, rng_state, step_checkpoints

        run = self.run
        path = checkpoint_path(run.output_dir, run.step)
        if self.last_checkpoint == path:
            return path
        # Trackers store everything up to this step first, so that a run resumed from this
        # checkpoint neither repeats nor misses a logged step.
        self.hook.ssl_checkpoint(run=run, path=path)
        state = {
            "format": FORMAT,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "step": run.step,
            "epoch": run.epoch,
            "batch_in_epoch": run.extra.get("batch_in_epoch", 0),
            "nonfinite": self.nonfinite,
            "rng": rng_state(),
            "config": to_yaml(self.config),
            "mlflow_run_id": run.tracking_run_id,
            "encoder_prefix": run.encoder_prefix,
            "knn_top1_init": run.extra.get("knn_top1_init"),
        }
        try:
            save_checkpoint(path, state)
        except OSError as exc:
            kept = self.last_checkpoint or "none written yet"
            raise RunFailed(
                f"cannot write checkpoint {path}: {exc.strerror or exc}; "
                f"the previous checkpoint is intact: {kept}"
            ) from None
        self.last_checkpoint = path
        for old in step_checkpoints(run.output_dir)[: -self.config.trainer.keep_checkpoints]:
            old.unlink(missing_ok=True)
        return path

    def _publish_final(self) -> None:
        """``checkpoint.pt`` and ``encoder.safetensors`` in the run directory, for users."""
        from .checkpoint import save_weights, write_atomic

        run = self.run
        final = run.output_dir / "checkpoint.pt"
        source = self.save()

        def link(tmp: Path) -> None:
            tmp.unlink()
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)

        run.artifacts["checkpoint"] = write_atomic(final, link)
        run.artifacts["encoder"] = save_weights(run.output_dir / "encoder.safetensors", run.encoder)

    # --- the run ----------------------------------------------------------------------------

    def _knn(self) -> float | None:
        config, run = self.config, self.run
        if not (config.eval.knn and run.data.labelled):
            return None
        from .knn import knn_eval

        return knn_eval(
            run.encoder,
            run.data,
            image_size=config.data.image_size,
            device=run.device,
            k=config.eval.knn_k,
            temperature=config.eval.knn_temperature,
        )

    def fit(self) -> dict[str, float]:
        self._build()
        run = self.run
        final: dict[str, float] = {}
        if self.resumed is None:
            knn_init = self._knn()
            if knn_init is not None:
                run.extra["knn_top1_init"] = knn_init
                print(f"kNN top-1 at initialization: {knn_init:.4f}", file=sys.stderr)
        if run.extra.get("knn_top1_init") is None and self.resumed is not None:
            run.extra["knn_top1_init"] = self.resumed.get("knn_top1_init")
        if run.extra.get("knn_top1_init") is not None:
            final["knn_top1_init"] = run.extra["knn_top1_init"]

        self.hook.ssl_run_start(run=run)
        status = "FAILED"
        try:
            self._loop()
            self._publish_final()
            knn_final = self._knn()
            if knn_final is not None:
                final["knn_top1"] = knn_final
                init = final.get("knn_top1_init")
                shown = f" (at initialization {init:.4f})" if init is not None else ""
                print(f"kNN top-1 after training:    {knn_final:.4f}{shown}", file=sys.stderr)
            if "final_loss" in run.extra:
                final["final_loss"] = run.extra["final_loss"]
            status = "FINISHED"
        except (KeyboardInterrupt, RunInterrupted):
            status = "KILLED"
            raise
        finally:
            self.hook.ssl_run_end(run=run, status=status, metrics=final)
        return final

    def _loop(self) -> None:
        run, config = self.run, self.config
        sampler = self.loader.batch_sampler
        every = config.trainer.checkpoint_every
        while run.epoch < config.trainer.epochs and run.step < run.total_steps:
            start = run.extra.get("batch_in_epoch", 0)
            sampler.set_epoch(run.epoch, start_batch=start)
            run.model.train()
            started, images, loss_sum, steps = time.perf_counter(), 0, 0.0, 0
            for batch in self.loader:
                loss_value, size = self._step(batch)
                run.extra["batch_in_epoch"] = run.extra.get("batch_in_epoch", 0) + 1
                images += size
                loss_sum += loss_value if math.isfinite(loss_value) else 0.0
                steps += 1
                if self.stop.signum is not None:
                    path = self.save()
                    name = signal.Signals(self.stop.signum).name
                    raise RunInterrupted(
                        self.stop.signum,
                        f"stopped by {name} at step {run.step}; checkpoint {path}; continue "
                        f"with the same command and resume=auto output_dir={run.output_dir}",
                    )
                if every and run.step % every == 0:
                    self.save()
                if run.step >= run.total_steps:
                    break
            if run.extra["batch_in_epoch"] < run.steps_per_epoch:
                break  # max_steps ended the run inside this epoch
            run.epoch += 1
            run.extra["batch_in_epoch"] = 0
            elapsed = time.perf_counter() - started
            run.extra["final_loss"] = loss_sum / max(steps, 1)
            self.hook.ssl_epoch_end(
                run=run,
                epoch=run.epoch,
                metrics={
                    "epoch_loss": run.extra["final_loss"],
                    "img_per_s": images / max(elapsed, 1e-9),
                },
            )
            self.save()

    def _step(self, batch: dict[str, Any]) -> tuple[float, int]:
        """One optimizer step and target update; returns the loss and the batch size."""
        from .loader import normalize, to_device
        from .optim import set_lr

        run, plugins, selection = self.run, self.plugins, self.selection
        batch = run.batch = to_device(batch, run.device)
        views = _first(plugins, "ssl_make_views", selection, "view_generator", batch=batch)
        views = [normalize(v).contiguous(memory_format=self.memory_format) for v in views]
        lr = set_lr(run.optimizer, run.step, run.total_steps, self.warmup_steps)
        out = _first(
            plugins,
            "ssl_compute_loss",
            selection,
            "method",
            model=run.model,
            views=views,
            step=run.step,
        )
        loss = out["loss"]
        loss_value = float(loss.detach())
        run.optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(loss_value):
            self._nonfinite(loss_value)
            run.step += 1
            return loss_value, views[0].shape[0]
        loss.backward()
        run.optimizer.step()
        target_metrics = (
            self.hook.ssl_update_target(model=run.model, step=run.step, total_steps=run.total_steps)
            or {}
        )
        run.step += 1
        metrics = {"loss": loss_value, "lr": lr, **target_metrics}
        metrics.update({k: float(v) for k, v in out.items() if k != "loss"})
        self.hook.ssl_step_end(run=run, step=run.step, metrics=metrics)
        return loss_value, views[0].shape[0]

    def _nonfinite(self, value: float) -> None:
        self.nonfinite += 1
        step = self.run.step + 1
        allowed = self.config.trainer.skip_nonfinite
        if self.nonfinite > allowed:
            last = self.last_checkpoint or "none written yet"
            raise RunFailed(
                f"the loss became {value} at step {step}; last good checkpoint: {last}; "
                "lower optim.lr, or let trainer.skip_nonfinite=N skip up to N such steps"
            )
        print(
            f"warning: the loss became {value} at step {step}; step skipped "
            f"({self.nonfinite} of at most {allowed})",
            file=sys.stderr,
        )
