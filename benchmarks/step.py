"""Step overhead: one BYOL step through the engine against the hand-written loop.

Every case trains its own model from the same initialization on the same collated batch of
two ``uint8`` views (what the ``albumentations`` workers deliver), and the cases take turns in
every round. The engine cases run :meth:`ssl_core.engine.Trainer.train_step`, the code the
training loop runs per batch: hooks, normalization, memory format, learning-rate schedule,
loss, backward, LARS, EMA target update and the loss read back to the host. Trackers and
progress are not loaded here; :mod:`benchmarks.end_to_end` adds them and the input pipeline.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .common import Setting, engine_trainer, interleaved, log, median, spread, table
from .handloop import HandWrittenBYOL

#: (label, hand-written loop keyword arguments), the reference first.
HAND_CASES = [
    ("hand-written loop", {}),
    ("hand-written, channels_last", {"channels_last": True}),
    ("hand-written, views concatenated", {"concat_views": True}),
]
#: (label, engine overrides)
ENGINE_CASES = [
    ("ssl_core, defaults", []),
    ("ssl_core, byol.concat_views=true", ["byol.concat_views=true"]),
]
REFERENCE = HAND_CASES[0][0]


def hand_loop(setting: Setting, **kwargs: Any) -> HandWrittenBYOL:
    import timm
    import torch

    torch.manual_seed(0)
    backbone = timm.create_model(setting.backbone, pretrained=False, num_classes=0)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(setting.precision)
    return HandWrittenBYOL(backbone, torch.device(setting.device), autocast=dtype, **kwargs)


def measure(setting: Setting, engine_extra: list[str] | None = None) -> dict[str, list[float]]:
    """Seconds per optimizer step of every case, one list of round figures each."""
    rounds, repeat = (2, 1) if setting.quick else (7, 2)
    engine_extra = ["augment=albumentations", *(engine_extra or [])]
    with contextlib.ExitStack() as stack:
        cases = {}
        batch = None
        for label, overrides in ENGINE_CASES:
            trainer, batch = stack.enter_context(
                engine_trainer(setting, [*engine_extra, *overrides])
            )
            cases[label] = _engine_call(trainer, batch)
        views = batch["views"]
        for label, kwargs in HAND_CASES:
            loop = hand_loop(setting, **kwargs)
            cases[label] = lambda loop=loop: loop.step(views)
        ordered = {label: cases[label] for label, _ in HAND_CASES + ENGINE_CASES}
        log(f"step: warming up {len(ordered)} cases")
        interleaved(ordered, rounds=1, repeat=2 if not setting.quick else 1)
        log(f"step: {rounds} interleaved rounds of {repeat} steps per case")
        return interleaved(ordered, rounds=rounds, repeat=repeat, device=setting.device)


def _engine_call(trainer: Any, batch: dict[str, Any]) -> Any:
    def call() -> None:
        if trainer.train_step(batch) is None:
            raise RuntimeError("the benchmark runs without gradient accumulation")

    return call


def report(setting: Setting, times: dict[str, list[float]]) -> str:
    reference = median(times[REFERENCE])
    rows = []
    for label, values in times.items():
        ms = median(values) * 1000
        rows.append(
            [
                label,
                f"{ms:.0f}",
                spread(values),
                f"{setting.batch_size / median(values):.0f}",
                f"{median(values) / reference:.2f}×",
            ]
        )
    heading = (
        f"### Step overhead: BYOL, {setting.backbone}, {setting.image_size} px, "
        f"batch {setting.batch_size}, {setting.device}, precision {setting.precision}\n\n"
    )
    return heading + table(
        ["case", "ms/step", "spread", "img/s", f"vs {REFERENCE}"],
        rows,
    )


def step_only_rate(setting: Setting, extra: list[str], steps: int) -> float:
    """Images per second of the engine's step alone (same batch again and again)."""
    with engine_trainer(setting, extra) as (trainer, batch):
        call = _engine_call(trainer, batch)
        call()
        times = interleaved({"step": call}, rounds=1, repeat=steps, device=setting.device)
    return setting.batch_size / times["step"][0]
