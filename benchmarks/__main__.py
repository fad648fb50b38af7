"""``python -m benchmarks``: the whole suite, markdown on stdout; ``--quick`` for a smoke run.

Defaults follow the device: on a CPU resnet18 at 32 px, batch 64, float32; on CUDA resnet50
at 224 px, batch 64, bf16 autocast (channels_last is the engine's default either way).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

PARTS = ("step", "views", "data", "end-to-end", "memory", "folder", "health", "estimate")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure ssl_core's BYOL step, view generators, whole runs, memory, folder "
        "scans, the health monitor's cost and --estimate against real runs.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: fewer rounds and steps, small batches"
    )
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run (default: all of {', '.join(PARTS)})",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    parser.add_argument("--backbone", help="timm name (default: resnet18 on CPU, resnet50 on CUDA)")
    parser.add_argument("--image-size", type=int, help="pixels (default: 32 on CPU, 224 on CUDA)")
    parser.add_argument("--batch-size", type=int, help="images per view and step (default: 64)")
    parser.add_argument(
        "--precision", choices=("32", "bf16", "fp16"), help="default: 32 on CPU, bf16 on CUDA"
    )
    parser.add_argument(
        "--sizes", default="32,96,224", help="view sizes of the views part (default: 32,96,224)"
    )
    parser.add_argument(
        "--folder-tree",
        help="folders x files of the folder part's tree (default: 1000x1000; 20x50 with --quick)",
    )
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(
            f"error: unknown part {unknown[0]!r} in --only; valid: {', '.join(PARTS)}",
            file=sys.stderr,
        )
        return 2
    try:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    except ValueError:
        print(f"error: --sizes={args.sizes!r} is not a list of integers", file=sys.stderr)
        return 2
    tree = args.folder_tree or ("20x50" if args.quick else "1000x1000")
    try:
        folders, per_folder = (int(n) for n in tree.lower().split("x"))
        if folders < 2 or per_folder < 2:
            raise ValueError
    except ValueError:
        print(
            f"error: --folder-tree={tree!r} is not FOLDERSxFILES of at least 2x2 (e.g. 1000x1000)",
            file=sys.stderr,
        )
        return 2

    import torch

    from benchmarks import data as data_part
    from benchmarks import end_to_end, estimate, folder, health, memory, step, views
    from benchmarks.common import Setting, log, machine, table

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device=cuda but torch sees no CUDA device; use cpu", file=sys.stderr)
        return 2
    gpu = device.startswith("cuda")
    setting = Setting(
        device=device,
        backbone=args.backbone or ("resnet50" if gpu else "resnet18"),
        image_size=args.image_size or (224 if gpu else 32),
        batch_size=args.batch_size or (16 if args.quick else 64),
        precision=args.precision or ("bf16" if gpu else "32"),
        quick=args.quick,
    )
    if args.quick:
        sizes = sizes[:2]

    started = time.perf_counter()
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    sections = [
        "## ssl_core benchmarks" + (" (quick)" if args.quick else ""),
        f"`{command.strip()}`, {time.strftime('%Y-%m-%d %H:%M')}\n\n"
        + table(["", "machine"], machine()),
    ]
    print("\n\n".join(sections), flush=True)

    def emit(text: str) -> None:
        sections.append(text)
        print("\n" + text, flush=True)

    if "step" in parts:
        emit(step.report(setting, step.measure(setting)))
    if "views" in parts:
        emit(views.report(setting, views.measure(setting, sizes)))
    if "data" in parts:
        emit(data_part.report(setting, data_part.measure(setting)))
    if "end-to-end" in parts:
        emit(end_to_end.report(setting, end_to_end.measure(setting)))
    if "memory" in parts:
        cases = ["hand", "engine"] if args.quick else list(memory.CASES)
        emit(memory.report(setting, memory.measure(setting, cases)))
    if "folder" in parts:
        emit(folder.report(folder.measure(folders, per_folder)))
    if "health" in parts:
        emit(health.report(setting, health.measure(setting)))
    if "estimate" in parts:
        emit(estimate.report(setting, estimate.measure(setting)))
    elapsed = time.perf_counter() - started
    emit(f"Suite time: {elapsed / 60:.1f} min.")
    log(f"done in {elapsed:.0f} s")
    if args.output:
        args.output.write_text("\n\n".join(sections) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    raise SystemExit(main())
