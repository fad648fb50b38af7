"""The ``ssl`` command: ``ssl run``, ``ssl config``, ``ssl plugins``.

Every option of a run is a ``key=value`` override (``backbone=resnet50``,
``trainer.batch_size=64``). Mistakes a user can make print one line and exit with code 2;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__
from .errors import RunInterrupted, UserError

EXAMPLES = """\
examples:
  ssl run method=byol backbone=resnet18 backbone.small_input=true trainer.epochs=10
  ssl run method=byol backbone=resnet50 data=folder data.path=./images data.image_size=224
  ssl config method=byol            # the resolved config with every default
  ssl plugins                       # what is installed
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
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    config = sub.add_parser("config", help="print the resolved config with its defaults")
    config.add_argument("overrides", nargs="*", metavar="key=value")
    config.add_argument(
        "--reference", action="store_true", help="print every option as a markdown table instead"
    )
    config.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    plugins = sub.add_parser("plugins", help="list installed plugins and their components")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    return parser


def _load_plugins():
    from .plugins import get_plugins

    return get_plugins()


def cmd_config(args: argparse.Namespace) -> int:
    from .config import build_config, to_yaml
    from .plugins import warn_failures

    plugins = _load_plugins()
    warn_failures(plugins)
    if args.reference:
        from .config import reference  # every installed option; overrides do not apply

        print(reference(plugins.registry), end="")
        return 0
    cfg, _ = build_config(args.overrides, plugins.registry)
    print(to_yaml(cfg), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .config import build_config, to_yaml
    from .plugins import warn_failures

    plugins = _load_plugins()
    warn_failures(plugins)
    cfg, selection = build_config(args.overrides, plugins.registry)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    from .engine import train

    metrics = train(cfg, selection, plugins)
    summary = " ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
    print(f"done: {cfg.output_dir} {summary}".rstrip())
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
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


COMMANDS = {"run": cmd_run, "config": cmd_config, "plugins": cmd_plugins}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
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
        print(str(exc), file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
