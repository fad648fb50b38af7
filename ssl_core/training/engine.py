"""The training loop: selected components in, a trained encoder and a tracked run out.

The engine knows no method by name. It registers the selected components' run plugins for the
run, asks them (through the step hooks) for data, views, backbone, heads, parameter groups,
loss and the target update, and tells lifecycle hooks (trackers, progress) what happened.
Checkpoints (:mod:`ssl_core.training.state`) are written atomically every
``trainer.checkpoint_every`` steps, at epoch ends and at the end; a run continues from one with
``resume=auto`` or ``resume=PATH``.

Under ``torchrun`` (or ``trainer.devices=N``) every process runs this loop on its share of
each global batch, with the model wrapped in DistributedDataParallel; step hooks still get the
model itself (its calls go through the wrapper). Lifecycle hooks (trackers, progress, monitors)
and file writes run on rank 0 only, with the loss and the other step metrics averaged over
processes first. ``trainer.accumulate=K`` makes an optimizer step, a target update and a
schedule step out of K micro-batches; ``trainer.precision`` runs the forward pass under
autocast (fp16 with a GradScaler).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ssl_core import console
from ssl_core.config import Selection, resolve_device
from ssl_core.data.loader import to_device
from ssl_core.data.transforms import normalize
from ssl_core.errors import (
    ConfigError,
    PluginError,
    RunFailed,
    RunInterrupted,
    UserError,
    during_run,
)
from ssl_core.plugins import Plugins
from ssl_core.training import distributed, ownership, placement, state
from ssl_core.training.launch import relaunch, relaunches
from ssl_core.training.optim import apply_schedule, clip_gradients, drop_frozen_gradients
from ssl_core.training.placement import encoder_prefix
from ssl_core.training.preflight import check_before_work, probe_views
from ssl_core.training.stopping import StopRequest, fail_if_asked, stop_on_signals


def answer(plugins: Plugins, selection: Selection, kind: str, hook: str, **kwargs: Any) -> Any:
    """The selected ``kind`` component's answer to step hook ``hook``; it must give one."""
    result = getattr(plugins.hook, hook)(**kwargs)
    if result is None:
        component = getattr(selection, kind)
        raise PluginError(
            f"{hook} returned nothing: {kind.replace('_', ' ')} '{component.name}' of plugin "
            f"'{component.provider}' does not implement it"
        )
    return result


def train(config: DictConfig, selection: Selection, plugins: Plugins) -> dict[str, float]:
    """Run one pretraining run to the end (or continue one); returns the final metrics.

    Under a launcher (``$WORLD_SIZE`` > 1) this process joins the process group for the run;
    ``trainer.devices=N`` outside a launcher starts N processes through torchrun instead (see
    :func:`relaunch`).
    """
    devices, launched = config.trainer.devices, distributed.launched_world_size()
    components = [component for _, component in selection.items()]
    with plugins.running(config, components):
        check_before_work(config, plugins)  # the plugins' checks and the core's, before any work
    if relaunches(devices):
        return relaunch(devices)
    if devices > 1 and launched != devices:
        raise ConfigError(
            f"trainer.devices={devices} but the launcher started {launched} processes; "
            "leave trainer.devices=1 under torchrun"
        )
    device_type = torch_device_type(config.trainer.device)
    with (
        distributed.process_group(device_type),
        plugins.running(config, components),
        stop_on_signals() as stop,
        ownership.owned(config) as owner,  # one run per output_dir; see ownership
    ):
        return Trainer(config, selection, plugins, stop, owner).fit()


def torch_device_type(requested: str) -> str:
    return str(resolve_device(requested)).split(":")[0]


class Trainer:
    """One run: builds everything through the hooks, then loops, checkpoints and reports."""

    def __init__(
        self,
        config: DictConfig,
        selection: Selection,
        plugins: Plugins,
        stop: StopRequest,
        owner: ownership.RunDirectory | None = None,
    ) -> None:
        self.config, self.selection, self.plugins, self.stop = config, selection, plugins, stop
        self.owner = owner or ownership.RunDirectory(config)
        self.hook = plugins.hook
        self.last_checkpoint: Path | None = None
        self.nonfinite = 0
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.main = self.rank == 0
        self.accumulate = config.trainer.accumulate
        # micro-batches of the optimizer step under way: (loss, other metrics)
        self.pending: list[tuple[Any, dict[str, Any]]] = []
        self.scope = contextlib.ExitStack()

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Call a lifecycle hook, on rank 0 only: one process talks to trackers and the user."""
        if self.main:
            getattr(self.hook, hook)(**kwargs)

    def answer(self, kind: str, hook: str, **kwargs: Any) -> Any:
        return answer(self.plugins, self.selection, kind, hook, **kwargs)

    # --- set-up -----------------------------------------------------------------------------

    def build(self) -> None:
        """Validate, build data, model and optimizer through the hooks, restore a checkpoint."""
        from ssl_core.data.loader import build_train_loader, default_workers
        from ssl_core.training.checkpoint import load_checkpoint
        from ssl_core.training.continuation import check_resume, planned_steps
        from ssl_core.training.resume import find_resume
        from ssl_core.training.run import RunContext
        from ssl_core.training.warm_start import read_starting_weights, start_encoder

        config, trainer = self.config, self.config.trainer
        resume_from = find_resume(config)
        self.resumed = load_checkpoint(resume_from) if resume_from is not None else None
        continued = check_resume(config, self.resumed, resume_from, world_size=self.world)
        self.owner.check_resume(self.resumed, resume_from)
        starting = read_starting_weights(config) if self.resumed is None else None
        torch.use_deterministic_algorithms(trainer.deterministic)
        state.seed_everything(trainer.seed)
        device = placement.training_device(trainer, self.world)

        # Rank 0 builds the data first, so that a download or a cache is made once.
        if not self.main:
            distributed.barrier()
        data = self.answer("dataset", "ssl_build_dataset")
        if self.main:
            distributed.barrier()
        transform = self.answer("view_generator", "ssl_sample_transform")
        self.loader = build_train_loader(
            data.train,
            transform,
            batch_size=trainer.batch_size,
            num_workers=default_workers(trainer.num_workers, device.type),
            seed=trainer.seed,
            pin_memory=device.type == "cuda",
            rank=self.rank,
            world_size=self.world,
            accumulate=self.accumulate,
        )
        global_batch = self.loader.batch_sampler.global_batch_size
        steps_per_epoch = self.loader.batch_sampler.batches_per_epoch
        total_steps = planned_steps(config, steps_per_epoch)

        backbone = self.answer("backbone", "ssl_build_backbone")
        start_encoder(backbone, starting, config, self.selection)  # before the heads
        model = self.answer("method", "ssl_build_heads", backbone=backbone)
        model, self.memory_format = placement.place(
            model, backbone, config, device, world=self.world, main=self.main
        )
        # the learning rate follows the global batch: per process x processes x accumulation
        optimizer = self._optimizer(model, global_batch)
        from ssl_core.training.optim import warmup_steps

        self.warmup_steps = warmup_steps(config.optim.warmup_epochs, steps_per_epoch, total_steps)
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
            str(trainer.precision)
        )
        self.scaler = (
            torch.amp.GradScaler(device.type) if str(trainer.precision) == "fp16" else None
        )

        output_dir = Path(config.output_dir)
        self.run = run = RunContext(
            config=config,
            selection=self.selection,
            output_dir=output_dir,
            device=device,
            model=model,
            encoder=backbone,
            optimizer=optimizer,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            batch_size=global_batch,
            data=data,
            encoder_prefix=encoder_prefix(model, backbone),
            plugin_versions=self.plugins.versions(),
        )
        run.extra.update(world_size=self.world, accumulate=self.accumulate)
        if self.world > 1:
            # Initialization was equal everywhere; from here each process draws its own numbers.
            state.seed_everything(state.rank_seed(trainer.seed, self.rank))
        if self.resumed is not None:
            state.restore(self, self.resumed, resume_from)
        if continued is not None:
            continued.begin(self)
        if self.world > 1:
            # Made after the restore, so that every process starts from the checkpoint's
            # weights; step hooks keep getting the model itself, whose calls now go through it.
            from torch.nn.parallel import DistributedDataParallel

            self.wrapper = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
            self.scope.enter_context(distributed.calls_through(model, self.wrapper))
        else:
            self.wrapper = None

    def _optimizer(self, model: Any, global_batch: int) -> Any:
        """The method's parameter groups (or the core's default ones) under ``optim.*``."""
        from ssl_core.methods.param_groups import check_groups
        from ssl_core.training.optim import build_optimizer

        groups = self.hook.ssl_param_groups(model=model)
        method = self.selection.method
        try:
            check_groups(model, groups, f"ssl_param_groups of method '{method.name}'")
        except ValueError as exc:
            raise PluginError(f"{exc} (plugin '{method.provider}')") from None
        return build_optimizer(groups, self.config.optim, global_batch)

    # --- the run ----------------------------------------------------------------------------

    def _knn(self) -> float | None:
        """Weighted kNN top-1 of the encoder; the same value on every process."""
        config, run = self.config, self.run
        if not (config.eval.knn and run.data.labelled):
            return None
        measured = run.extra.get("knn_top1_at_step")  # by the kNN monitor, in one process
        if self.world == 1 and measured is not None and measured[0] == run.step:
            return measured[1]  # these weights were measured at the last epoch's end
        from ssl_core.evaluation.knn import knn_eval_sharded

        return knn_eval_sharded(
            run.encoder,
            run.data,
            image_size=config.data.image_size,
            device=run.device,
            k=config.eval.knn_k,
            temperature=config.eval.knn_temperature,
        )

    def fit(self) -> dict[str, float]:
        with self.scope:
            self.build()
            return self._fit()

    def _fit(self) -> dict[str, float]:
        run = self.run
        final: dict[str, float] = {}
        probe_views(self)
        if self.resumed is None:
            knn_init = self._knn()
            if knn_init is not None:
                run.extra["knn_top1_init"] = knn_init
                if self.main:
                    print(f"kNN top-1 at initialization: {knn_init:.4f}", file=sys.stderr)
        if run.extra.get("knn_top1_init") is None and self.resumed is not None:
            run.extra["knn_top1_init"] = self.resumed.get("knn_top1_init")
        if run.extra.get("knn_top1_init") is not None:
            final["knn_top1_init"] = run.extra["knn_top1_init"]

        status = "FAILED"
        self.stop.training()  # from here a signal stops the run after the step under way
        try:
            self.owner.adopt(run)  # resume=auto before the first checkpoint: the same MLflow run
            self.notify("ssl_run_start", run=run)
            self.owner.begin(run)  # config.yaml and run.json (the run's id) before the first step
            console.setup_done()  # from here each process's warnings are its own
            self._loop()
            fail_if_asked(run, distributed.any_process(run.failure is not None, run.device))
            state.publish_final(self)
            knn_final = self._knn()
            if knn_final is not None:
                final["knn_top1"] = knn_final
                init = final.get("knn_top1_init")
                shown = f" (at initialization {init:.4f})" if init is not None else ""
                if self.main:
                    print(f"kNN top-1 after training:    {knn_final:.4f}{shown}", file=sys.stderr)
            if "final_loss" in run.extra:
                final["final_loss"] = run.extra["final_loss"]
            status = "FINISHED"
        except (KeyboardInterrupt, RunInterrupted):
            status = "KILLED"
            raise
        except UserError as exc:
            raise during_run(exc)  # noqa: B904 (it keeps its cause) the run started: exit 1
        finally:
            with self.stop.ending():  # signals wait until the end is recorded
                try:
                    self.notify("ssl_run_end", run=run, status=status, metrics=final)
                finally:
                    self.owner.end(status)
        return final

    def _loop(self) -> None:
        run, config = self.run, self.config
        sampler = self.loader.batch_sampler
        every = config.trainer.checkpoint_every
        while run.epoch < config.trainer.epochs and run.step < run.total_steps:
            start = run.extra.get("batch_in_epoch", 0)
            sampler.set_epoch(run.epoch, start_batch=start)
            run.model.train()
            started, loss_sum, steps = time.perf_counter(), 0.0, 0
            for batch in self.loader:
                done = self.train_step(batch)
                if done is None:
                    continue
                loss_value, stop = done
                run.extra["batch_in_epoch"] = run.extra.get("batch_in_epoch", 0) + 1
                loss_sum += loss_value if math.isfinite(loss_value) else 0.0
                steps += 1
                if stop:
                    path = state.save(self)
                    signum = self.stop.signum or signal.SIGTERM  # another process was asked
                    name = signal.Signals(signum).name
                    raise RunInterrupted(
                        signum,
                        f"stopped by {name} at step {run.step}; checkpoint {path}; continue "
                        f"with the same command and resume=auto output_dir={run.output_dir}",
                    )
                if every and run.step % every == 0:
                    state.save(self)
                if run.step >= run.total_steps:
                    break
            if run.extra["batch_in_epoch"] < run.steps_per_epoch:
                break  # max_steps ended the run inside this epoch
            run.epoch += 1
            run.extra["batch_in_epoch"] = 0
            elapsed = time.perf_counter() - started
            run.extra["final_loss"] = loss_sum / max(steps, 1)
            self.notify(
                "ssl_epoch_end",
                run=run,
                epoch=run.epoch,
                metrics={
                    "epoch_loss": run.extra["final_loss"],
                    "img_per_s": steps * run.batch_size / max(elapsed, 1e-9),
                },
            )
            state.save(self)

    def train_step(self, batch: dict[str, Any]) -> tuple[float, bool] | None:
        """One micro-batch of training; after the last of an optimizer step, that step.

        Returns ``None`` while an optimizer step is still gathering micro-batches, then what
        :meth:`_step` returns. This is all the loop does per batch, so timing it times the
        engine's step (``benchmarks/step.py`` does).
        """
        self._micro_step(batch)
        if len(self.pending) < self.accumulate:
            return None
        return self._step()

    def _views(self, batch: dict[str, Any]) -> list[Any]:
        """The normalized views of ``batch`` (their number was checked before the run)."""

        views = self.answer("view_generator", "ssl_make_views", batch=batch)
        return [normalize(v).contiguous(memory_format=self.memory_format) for v in views]

    def _micro_step(self, batch: dict[str, Any]) -> None:
        """Forward and backward of one micro-batch; gradients add up over an optimizer step."""

        run = self.run
        batch = run.batch = to_device(batch, run.device)
        views = self._views(batch)
        first, last = not self.pending, len(self.pending) == self.accumulate - 1
        if first:
            self.schedule = apply_schedule(
                run.optimizer, run.step, run.total_steps, self.warmup_steps
            )
            run.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            out = self.answer(
                "method", "ssl_compute_loss", model=run.model, views=views, info=run.info
            )
        loss = out["loss"].float()  # fp32 whatever the autocast dtype
        scaled = loss / self.accumulate if self.accumulate > 1 else loss
        if self.scaler is not None:
            scaled = self.scaler.scale(scaled)
        # Gradients are averaged over processes once per optimizer step, at the last backward.
        no_sync = getattr(self.wrapper, "no_sync", None)
        with no_sync() if no_sync is not None and not last else contextlib.nullcontext():
            scaled.backward()
        others = {k: v.detach().float() for k, v in out.items() if k != "loss"}
        self.pending.append((loss.detach(), others))

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.run.device.type, dtype=self.autocast_dtype)

    def _step(self) -> tuple[float, bool]:
        """The optimizer step and target update after the last micro-batch.

        Returns the loss (averaged over micro-batches and processes) and whether the run is
        to stop now (asked on any process: all stop at the same step).
        """
        run, optim = self.run, self.config.optim
        losses = [loss for loss, _ in self.pending]
        names = list(self.pending[0][1])
        values = [torch.stack(losses).mean() if len(losses) > 1 else losses[0]]
        values += [torch.stack([o[name] for _, o in self.pending]).mean() for name in names]
        self.pending = []
        stop, failed = self.stop.signum is not None, run.failure is not None
        if self.world > 1:
            flags = torch.tensor([float(stop), float(failed)], device=run.device)
            summed = distributed.all_reduce_sum(torch.cat([torch.stack(values), flags]))
            values = (summed[:-2] / self.world).tolist()
            stop, failed = bool(summed[-2].item() > 0), bool(summed[-1].item() > 0)
        else:
            values = torch.stack(values).tolist() if names else [float(values[0])]
        fail_if_asked(run, failed)  # asked by a lifecycle plugin at the previous step's end
        loss_value = values[0]
        if not math.isfinite(loss_value):
            run.optimizer.zero_grad(set_to_none=True)
            self._nonfinite(loss_value)
            run.step += 1
            return loss_value, stop
        drop_frozen_gradients(run.optimizer, run.epoch)
        stepped = True
        if self.scaler is not None:
            if optim.clip_grad:
                self.scaler.unscale_(run.optimizer)
                clip_gradients(run.optimizer, optim.clip_grad, optim.clip_grad_per_param)
            # skips the update by itself when a gradient overflowed, and lowers the scale
            scale = self.scaler.get_scale()
            self.scaler.step(run.optimizer)
            self.scaler.update()
            stepped = self.scaler.get_scale() >= scale
        else:
            if optim.clip_grad:
                clip_gradients(run.optimizer, optim.clip_grad, optim.clip_grad_per_param)
            run.optimizer.step()
        target_metrics: dict[str, Any] = {}
        if stepped:
            # A step the scaler skipped moved no weight, so the target does not move either.
            target_metrics = self.hook.ssl_update_target(model=run.model, info=run.info) or {}
        run.step += 1
        metrics = {"loss": loss_value, **self.schedule, **target_metrics}
        metrics.update(zip(names, values[1:], strict=True))
        self.notify("ssl_step_end", run=run, step=run.step, metrics=metrics)
        return loss_value, stop

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
        if self.main:
            print(
                f"warning: the loss became {value} at step {step}; step skipped "
                f"({self.nonfinite} of at most {allowed})",
                file=sys.stderr,
            )
