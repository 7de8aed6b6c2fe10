"""`testtime eval`: strategies x budgets x seeds on a task; rerunning the same command resumes."""

from __future__ import annotations

import os

from ._common import add_model_args, add_task_args, default_max_tokens, ints, names, task_options
from ._engine_args import add_engine_args, make_engine, make_scorer

HELP = "evaluate strategies at several budgets on a task (resumable)"


def add_arguments(p) -> None:
    add_task_args(p)
    p.add_argument("--strategy", type=names, default=["majority", "bon", "weighted"], help="comma-separated: greedy, majority, bon, weighted, beam, dvts, pf (default: majority,bon,weighted)")
    p.add_argument("--n", type=ints("--n"), default=[1, 2, 4, 8, 16], help="budgets, comma-separated (default: 1,2,4,8,16)")
    p.add_argument("--seed", type=ints("--seed"), default=[0], help="seeds, comma-separated (default: 0)")
    p.add_argument("--out", default=None, help="run directory; rerunning the same command resumes it (default: runs/<task>, runs/<task>-shardIofK with --shard)")
    p.add_argument("--batch-problems", type=int, default=0, help="problems per chunk, the resume unit (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--policy", default=None, help="policy file for --strategy optimal, written by `testtime optimize` (default: none)")
    p.add_argument("--shard", default=None, help="run only shard I of K (0-based, whole chunks), e.g. 0/4; join shards with `testtime merge` (default: all)")
    add_model_args(p)
    add_engine_args(p)


def run(args) -> int:
    from ..eval import EvalConfig, run_eval
    from ..tasks import load_task

    config = EvalConfig(
        task=args.task,
        split=args.split,
        data=args.data,
        limit=args.limit,
        levels=args.levels,
        strategies=args.strategy,
        n=args.n,
        scorer=args.scorer,
        model=args.model,
        seeds=args.seed,
        max_tokens=default_max_tokens(args),
        temperature=args.temperature,
        top_p=args.top_p,
        batch_problems=args.batch_problems,
        out=args.out or os.path.join("runs", args.task + (f"-shard{args.shard.replace('/', 'of')}" if args.shard else "")),
        task_options=task_options(args),
        shard=args.shard,
        policy=args.policy,
    )
    # Validate the task before loading the model, so bad input fails in a second.
    problems = load_task(config.task, split=config.split, data=config.data, limit=config.limit, levels=config.levels, **config.task_options)
    run_eval(config, engine=make_engine(args), scorer=make_scorer(args), problems=problems, progress=not args.no_progress)
    return 0
