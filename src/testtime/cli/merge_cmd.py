"""`testtime merge RUN_DIR... --out DIR`: join the shards of an eval (`eval --shard I/K`) into one run."""

from __future__ import annotations

HELP = "join the result files of eval shards (eval --shard I/K) and summarize them like one run"


def add_arguments(p) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="the shards' run directories (every shard 0..K-1 once)")
    p.add_argument("--out", required=True, help="directory for the merged results, summary and plots (required)")


def run(args) -> int:
    from ..eval._merge import merge_runs

    merge_runs(args.run_dirs, args.out)
    return 0
