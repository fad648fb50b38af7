"""Memory: peak resident memory (and CUDA memory) of each configuration, each in a fresh process.

A process's peak RSS only ever grows, so every case runs in its own interpreter
(``python -m benchmarks.memory CASE ...``), builds its model, trains a few steps and reports
its RSS once built and its peak RSS at the end, and on CUDA the peak of allocated device
memory during the steps. The run case is a whole tracked run (kNN off) in the main process;
its DataLoader workers are forked processes that share the parent's pages until they write
to them, and are not counted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .common import Setting, engine_trainer, log, quiet, rss_mib, sample_batch, table

CASES = {
    "hand": "hand-written loop",
    "engine": "ssl_core step, defaults",
    "engine-concat": "ssl_core step, byol.concat_views=true",
    "run": "ssl run (tracked, default workers; main process)",
}
STEPS = 3
ROOT = Path(__file__).resolve().parent.parent


def _cuda_reset(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def _cuda_peak(device: str) -> float | None:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def run_case(case: str, setting: Setting) -> dict[str, Any]:
    """Build and train ``case`` in this process; its memory figures."""
    result: dict[str, Any] = {}
    if case == "hand":
        from .step import hand_loop

        views = sample_batch(setting, ["augment=albumentations"])["views"]
        loop = hand_loop(setting)
        result["rss_built"] = rss_mib("VmRSS")
        _cuda_reset(setting.device)
        for _ in range(STEPS):
            loop.step(views)
    elif case in ("engine", "engine-concat"):
        extra = ["augment=albumentations"]
        if case == "engine-concat":
            extra.append("byol.concat_views=true")
        with engine_trainer(setting, extra) as (trainer, batch):
            result["rss_built"] = rss_mib("VmRSS")
            _cuda_reset(setting.device)
            for _ in range(STEPS):
                trainer.train_step(batch)
    elif case == "run":
        from .end_to_end import run_rate

        _cuda_reset(setting.device)
        with quiet():
            run_rate(setting, warmup=1, measured=STEPS, extra=[])
    else:
        raise ValueError(f"unknown case {case!r}; valid: {', '.join(CASES)}")
    result["rss_peak"] = rss_mib("VmHWM")
    result["cuda_peak"] = _cuda_peak(setting.device)
    return result


def measure(setting: Setting, cases: list[str]) -> list[list[str]]:
    rows = []
    for case in cases:
        log(f"memory: {CASES[case]} in a fresh process")
        command = [
            sys.executable,
            "-m",
            "benchmarks.memory",
            case,
            f"--device={setting.device}",
            f"--backbone={setting.backbone}",
            f"--image-size={setting.image_size}",
            f"--batch-size={setting.batch_size}",
            f"--precision={setting.precision}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        built = figures.get("rss_built")
        cuda = figures.get("cuda_peak")
        rows.append(
            [
                CASES[case],
                f"{built:.0f}" if built is not None else "-",
                f"{figures['rss_peak']:.0f}",
                f"{cuda:.0f}" if cuda is not None else "-",
            ]
        )
    return rows


def report(setting: Setting, rows: list[list[str]]) -> str:
    heading = (
        f"### Memory: {setting.backbone}, {setting.image_size} px, batch {setting.batch_size}, "
        f"{setting.device}, precision {setting.precision}, {STEPS} steps\n\n"
    )
    return heading + table(
        [
            "configuration",
            "RSS built (MiB)",
            "peak RSS (MiB)",
            "peak CUDA allocated (MiB)",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="one memory case, in this process")
    parser.add_argument("case", choices=list(CASES))
    parser.add_argument("--device", required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--precision", default="32")
    args = parser.parse_args()
    setting = Setting(
        device=args.device,
        backbone=args.backbone,
        image_size=args.image_size,
        batch_size=args.batch_size,
        precision=args.precision,
    )
    print(json.dumps(run_case(args.case, setting)))


if __name__ == "__main__":
    main()
