"""The `testtime` command. Each subcommand is a module here with `HELP`, `add_arguments(parser)` and
`run(args) -> int`; `COMMANDS` lists them.

Errors a user can cause end with one line on stderr (`error: ...`) and exit status 2 (bad usage: a value,
a name) or 1 (a failure: data, model, engine, a path that cannot be read or written); anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .._errors import TesttimeError, UnknownNameError, ValidationError

__all__ = ["main", "COMMANDS"]

COMMANDS = {
    "eval": "eval_cmd",
    "solve": "solve_cmd",
    "merge": "merge_cmd",
    "serve": "serve_cmd",
    "difficulty": "difficulty_cmd",
    "optimize": "optimize_cmd",
    "report": "report_cmd",
    "bench": "bench_cmd",
    "train-prm": "train_prm_cmd",
    "prm-report": "prm_report_cmd",
    "replay": "replay_cmd",
    "export": "export_cmd",
    "finetune": "finetune_cmd",
    "bon-curve": "bon_curve_cmd",
}
"""Subcommand name -> module in testtime.cli."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="testtime", description="Inference-time compute scaling for language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        mod = importlib.import_module(f".{module}", __name__)
        # `help` is %-formatted by argparse (a "100%" in it would raise), the description is printed as is
        mod.add_arguments(sub.add_parser(name, help=mod.HELP.replace("%", "%%"), description=mod.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mod = importlib.import_module(f".{COMMANDS[args.command]}", __name__)
    try:
        return mod.run(args)
    except TesttimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, (ValidationError, UnknownNameError)) else 1
    except OSError as exc:
        if exc.filename is None:
            raise
        # A path the command was given cannot be read or written (a file where a directory goes, no permission,
        # a full disk): the user's to fix, so one line, like a TesttimeError.
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
