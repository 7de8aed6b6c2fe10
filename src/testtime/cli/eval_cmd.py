"""`testtime eval`: strategies x budgets x seeds on a task; rerunning the same command resumes."""

from __future__ import annotations

import os

from ._common import add_model_args, add_task_args, ints, names, run_eval_from_args, strategy_help
from ._engine_args import add_engine_args
from ._ray_args import add_ray_args

HELP = "evaluate strategies at several budgets on a task (resumable)"


def add_arguments(p) -> None:
    add_task_args(p)
    p.add_argument("--strategy", type=names, default=["majority", "bon", "weighted"], help="comma-separated: " + strategy_help() + " (default: majority,bon,weighted)")
    p.add_argument("--n", type=ints("--n"), default=[1, 2, 4, 8, 16], help="budgets, comma-separated (default: 1,2,4,8,16)")
    p.add_argument("--seed", type=ints("--seed"), default=[0], help="seeds, comma-separated (default: 0)")
    p.add_argument("--out", default=None, help="run directory; rerunning the same command resumes it (default: runs/<task>, runs/<task>-shardIofK with --shard)")
    p.add_argument("--batch-problems", type=int, default=0, help="problems per chunk, the resume unit (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--policy", default=None, help="policy file for --strategy optimal, written by `testtime optimize` (default: none)")
    p.add_argument("--shard", default=None, help="run only shard I of K (0-based, whole chunks), e.g. 0/4; join shards with `testtime merge` (default: all)")
    add_model_args(p)
    add_engine_args(p)
    add_ray_args(p)


def run(args) -> int:
    out = args.out or os.path.join("runs", args.task + (f"-shard{args.shard.replace('/', 'of')}" if args.shard else ""))
    run_eval_from_args(args, strategies=args.strategy, n=args.n, out=out, shard=args.shard, policy=args.policy, use_ray=True)
    return 0
