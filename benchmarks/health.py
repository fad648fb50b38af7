"""Health monitor: what representation health at its default cadence costs a training step.

Two trainers are built alike (the setting's BYOL, ``augment=albumentations`` as in the step
benchmark); one has the health monitor registered and started as a run has it (guard on), so
every ``eval.health_every`` steps its forward hooks copy the encoder's and the projector's
features and it computes the metrics. Both train on the same batch in turns, a block of
``health_every`` steps each (one check per block), and the medians over rounds are compared.
The fastest rounds are compared too: on a shared machine the medians carry other jobs'
noise, which can exceed the monitor's cost many times over. So the monitor's own work in one
check is also timed alone, on the batch's features (its hooks copying both views' outputs,
the metrics, the guard), and set against ``health_every`` of the fastest steps without it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .common import Setting, engine_trainer, interleaved, log, median, spread, table


def measure(setting: Setting) -> dict[str, Any]:
    import torch

    from ssl_core.data.transforms import normalize
    from ssl_core.monitors.health import HealthMonitor
    from ssl_core.monitors.health_metrics import health

    rounds = 1 if setting.quick else 15
    # quick: a check every 2 steps, to time blocks of 2 steps
    extra = ["augment=albumentations", *(["eval.health_every=2"] if setting.quick else [])]
    with contextlib.ExitStack() as stack:
        plain, batch = stack.enter_context(engine_trainer(setting, extra))
        watched, _ = stack.enter_context(engine_trainer(setting, extra))
        every = int(watched.config.eval.health_every)
        monitor = HealthMonitor()
        watched.plugins.pm.register(monitor, name="health-monitor")
        monitor.ssl_run_start(run=watched.run)

        def block(trainer: Any) -> Any:
            return lambda: [trainer.train_step(batch) for _ in range(every)]

        cases = {"without": block(plain), "with": block(watched)}
        log(f"health: warming up, then {rounds} interleaved rounds of {every} steps per case")
        interleaved(cases, rounds=1, repeat=1, device=setting.device)
        times = interleaved(cases, rounds=rounds, repeat=1, device=setting.device)
        # the monitor's own work in one check, on the batch's features: its hooks copying both
        # views' outputs of the encoder and the projector, then the metrics and the guard
        run = watched.run
        views = [normalize(v.float().div(255).to(run.device)) for v in batch["views"][:2]]
        with torch.no_grad():
            encoded = [run.encoder(v) for v in views]
            projected = [run.model.projector(e) for e in encoded]
        hooks = {"encoder": monitor._capture("encoder"), "projector": monitor._capture("projector")}
        modules = {"encoder": run.encoder, "projector": run.model.projector}
        outputs = {"encoder": encoded, "projector": projected}
        run.model.train()
        run.batch = {"label": torch.zeros(views[0].shape[0], dtype=torch.int64)}

        def check() -> None:
            monitor.armed = True
            for name, hook in hooks.items():
                for output in outputs[name]:
                    hook(modules[name], (), output)
            monitor.ssl_step_end(run=run, step=every, metrics={})

        check()
        checks = interleaved({"check": check}, rounds=15, repeat=3, device=setting.device)
        metrics_only = interleaved(
            {"metrics": lambda: (health(*encoded), health(*projected))},
            rounds=15,
            repeat=3,
            device=setting.device,
        )
        monitor.ssl_run_end(run=run, status="FINISHED", metrics={})
    return {
        "every": every,
        "times": {k: [t / every for t in v] for k, v in times.items()},
        "check": checks["check"],
        "metrics": metrics_only["metrics"],
        "shapes": [tuple(encoded[0].shape), tuple(projected[0].shape)],
    }


def report(setting: Setting, result: dict[str, Any]) -> str:
    times, every = result["times"], result["every"]
    without, with_ = median(times["without"]), median(times["with"])
    check, metrics = median(result["check"]), median(result["metrics"])
    fastest = min(times["without"])
    (n, d), (_, p) = result["shapes"]
    rows = [
        [
            "engine step, no health monitor",
            f"{without * 1000:.0f}",
            spread(times["without"]),
            "1.000",
        ],
        [
            f"engine step, health monitor every {every} steps (guard on)",
            f"{with_ * 1000:.0f}",
            spread(times["with"]),
            f"**{with_ / without:.3f}** (fastest rounds: "
            f"{min(times['with']) / min(times['without']):.3f})",
        ],
        [
            f"one check alone: the metrics of {n}x{d} encoder and {n}x{p} projector features",
            f"{metrics * 1000:.2f}",
            spread(result["metrics"]),
            f"{metrics / (every * fastest):.2%} of {every} steps",
        ],
        [
            "one check alone: the monitor's work (hooks copying 2 views of each, metrics, guard)",
            f"{check * 1000:.2f}",
            spread(result["check"]),
            f"**{check / (every * fastest):.2%}** of {every} steps",
        ],
    ]
    heading = (
        f"### Health monitor: BYOL, {setting.backbone}, {setting.image_size} px, batch "
        f"{setting.batch_size}, {setting.device}\n\n"
    )
    return heading + table(["case", "ms", "spread", "vs no monitor"], rows)
