"""The ``ssl`` command: ``run``, ``config``, ``plugins``, ``eval``, ``export``, ``embed``,
``compare``; a thin layer over :mod:`ssl_core.api`.

Every option of a run is a ``key=value`` override (``backbone=resnet50``,
``trainer.batch_size=64``). Mistakes a user can make print one line and exit with code 2;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ssl_core import __version__
from ssl_core.console import first_process
from ssl_core.errors import RunInterrupted, UserError

EXAMPLES = """\
examples:
  ssl run method=byol backbone=resnet18 backbone.small_input=true trainer.epochs=10
  ssl run method=byol backbone=resnet50 data=folder data.path=./images data.image_size=224
  ssl config method=byol            # the resolved config with every default
  ssl plugins                       # what is installed
  ssl plugins check my-plugin       # the plugin contract on a plugin's components
  ssl run --multirun backbone=resnet18,resnet34 byol.tau_base=0.99,0.996   # 4 runs
  ssl eval linear run=RUN_ID        # linear probe of a run's encoder (or run=PATH/checkpoint.pt)
  ssl run --config exp.yaml trainer.epochs=10   # a YAML file of options; the command line wins
  ssl run --from RUN_ID optim.lr=0.9            # re-run a run with one change
  ssl run resume=RUN_ID trainer.epochs=200      # continue a finished run for longer
  ssl embed run=RUN_ID data=folder data.path=./images out=embeddings.parquet
  ssl compare experiment=ssl_core --plot runs.png
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssl",
        description="Self-supervised pretraining with pluggable methods, backbones and views.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ssl_core {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="pretrain an encoder",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("overrides", nargs="*", metavar="key=value")
    run.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    run.add_argument(
        "--estimate",
        action="store_true",
        help="time a few steps and print images/s, time per epoch and run, peak memory and "
        "the bottleneck; no training, no tracking",
    )
    run.add_argument(
        "--multirun",
        action="store_true",
        help="key=a,b,... values: run every combination in sequence into one experiment",
    )
    run.add_argument(
        "--config",
        action="append",
        metavar="FILE",
        help="a YAML file of options (repeatable); key=value arguments win",
    )
    run.add_argument(
        "--from",
        dest="from_run",
        metavar="RUN",
        help="start from the resolved config of a run (MLflow id, run directory, config.yaml)",
    )
    run.add_argument(
        "--max-runs",
        type=int,
        default=None,
        metavar="N",
        help="allow a --multirun sweep of up to N runs (default 1000)",
    )
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    config = sub.add_parser("config", help="print the resolved config with its defaults")
    config.add_argument("overrides", nargs="*", metavar="key=value")
    config.add_argument(
        "--reference", action="store_true", help="print every option as a markdown table instead"
    )
    config.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    plugins = sub.add_parser(
        "plugins",
        help="list installed plugins; 'check [NAME...]' runs the plugin contract on them",
    )
    plugins.add_argument(
        "check", nargs="*", metavar="check [NAME ...]", help="run the contract's checks"
    )
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    evaluate = sub.add_parser(
        "eval",
        help="evaluate a pretrained encoder: knn, linear, finetune",
        description="Evaluate the encoder of run=RUN_ID|PATH on a labelled dataset's held-out "
        "split; logged to MLflow as a child run of the pretraining run.",
    )
    evaluate.add_argument("protocol", choices=("knn", "linear", "finetune"))
    evaluate.add_argument(
        "overrides", nargs="*", metavar="key=value", help="run=..., data=..., eval.*"
    )
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    export = sub.add_parser(
        "export", help="write a run's encoder as safetensors that timm.create_model loads"
    )
    export.add_argument("overrides", nargs="*", metavar="key=value", help="run=..., out=FILE")
    export.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    embed = sub.add_parser(
        "embed",
        help="write a run's embeddings of every image: parquet, npy or safetensors",
        description="Embed every image of a dataset (the run's, or data=...) with the frozen "
        "encoder of run=RUN_ID|PATH into out=FILE (.parquet, .npy, .safetensors); head=NAME "
        "adds a head's output (head=projector).",
    )
    embed.add_argument(
        "overrides", nargs="*", metavar="key=value", help="run=..., out=FILE, data=..., head=..."
    )
    embed.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    compare = sub.add_parser("compare", help="compare runs: differing config keys and metrics")
    compare.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="experiment=NAME | runs=ID,ID,...; sort=METRIC; tracking.uri=URI",
    )
    output = compare.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true", help="CSV on stdout instead of a table")
    output.add_argument("--json", action="store_true", help="JSON on stdout instead of a table")
    compare.add_argument("--plot", metavar="PNG", help="also draw loss and kNN curves to PNG")
    compare.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    return parser


def _load_plugins():
    from ssl_core.plugins import get_plugins

    return get_plugins()


def cmd_config(args: argparse.Namespace) -> int:
    from ssl_core.config import build_config, to_yaml
    from ssl_core.plugins import warn_failures

    plugins = _load_plugins()
    warn_failures(plugins)
    if args.reference:
        from ssl_core.config.reference import (
            reference,  # every installed option; overrides do not apply
        )

        print(reference(plugins.registry), end="")
        return 0
    cfg, _ = build_config(args.overrides, plugins.registry)
    print(to_yaml(cfg), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ssl_core import api, console
    from ssl_core.config import to_yaml
    from ssl_core.plugins import warn_failures
    from ssl_core.training.launch import relaunches

    console.quiet_setup()  # under torchrun, rank 0 alone says the setup's notes and warnings
    plugins = _load_plugins()
    warn_failures(plugins)
    if args.multirun and args.estimate:
        raise UserError("--estimate takes one run, not --multirun; estimate one combination")
    if args.multirun:
        from ssl_core.experiments.sweep import run_sweep

        base = api.config_layers([], config=args.config, from_run=args.from_run, plugins=plugins)
        limit = {} if args.max_runs is None else {"max_runs": args.max_runs}
        return run_sweep(
            args.overrides, plugins, print_config=args.print_config, base=base, **limit
        )
    cfg, selection = api.resolve(
        args.overrides, config=args.config, from_run=args.from_run, plugins=plugins
    )
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    if args.estimate:
        from ssl_core.training.estimate import describe, estimate

        print(describe(estimate(cfg, selection, plugins)))
        return 0
    metrics = api.run(cfg, selection, plugins).metrics
    if first_process() and not relaunches(cfg.trainer.devices):  # rank 0 says it for the run
        summary = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        print(f"done: {cfg.output_dir} {summary}".rstrip())
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    if args.check:
        if args.check[0] != "check":
            raise UserError(
                f"unknown 'ssl plugins {args.check[0]}'; use ssl plugins check [NAME...]"
            )
        from ssl_core.testing.report import check_command

        return check_command(args.check[1:], as_json=args.json)
    plugins = _load_plugins()
    infos = plugins.infos()
    if args.json:
        payload = {
            "plugins": [
                info.__dict__ | {"hooks": list(info.hooks), "components": list(info.components)}
                for info in infos
            ],
            "failed": [failure.__dict__ for failure in plugins.failures],
        }
        print(json.dumps(payload, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ssl_core plugins")
    for column in ("plugin", "distribution", "version", "hooks", "components"):
        table.add_column(column)
    for info in infos:
        hooks = ", ".join(h.removeprefix("ssl_") for h in info.hooks)
        table.add_row(
            info.name, info.distribution, info.version, hooks, "\n".join(info.components) or "-"
        )
    console = Console()
    console.print(table)
    for failure in plugins.failures:
        console.print(f"[red]failed[/red] {failure}", highlight=False)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ssl_core.api import evaluate
    from ssl_core.evaluation.evaluate import describe
    from ssl_core.plugins import warn_failures

    plugins = _load_plugins()
    warn_failures(plugins)
    result = evaluate(None, args.protocol, overrides=args.overrides, plugins=plugins)
    print(json.dumps(result, indent=2) if args.json else describe(result))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ssl_core.api import export
    from ssl_core.evaluation.export import describe
    from ssl_core.plugins import warn_failures

    plugins = _load_plugins()
    warn_failures(plugins)
    print(describe(export(None, overrides=args.overrides, plugins=plugins)))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from ssl_core.evaluation.embed import DEFAULT_OUT, describe, embed
    from ssl_core.plugins import warn_failures

    plugins = _load_plugins()
    warn_failures(plugins)
    overrides = list(args.overrides)
    if not any(o.startswith("out=") for o in overrides):
        overrides.append(f"out={DEFAULT_OUT}")
    print(describe(*embed(overrides, plugins)))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ssl_core.experiments.compare import compare

    fmt = "csv" if args.csv else "json" if args.json else "table"
    return compare(args.overrides, fmt=fmt, plot_path=args.plot)


COMMANDS = {
    "run": cmd_run,
    "config": cmd_config,
    "plugins": cmd_plugins,
    "eval": cmd_eval,
    "export": cmd_export,
    "embed": cmd_embed,
    "compare": cmd_compare,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    # argparse stops filling a positional list at the first option: `ssl eval linear --json
    # run=ID` leaves `run=ID` over; such key=value leftovers belong to the overrides.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "overrides", None) is None or any(
            "=" not in e or e.startswith("-") for e in extra
        ):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RunInterrupted as exc:
        if str(exc) and first_process():  # one line for a run of several
            print(str(exc), file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
