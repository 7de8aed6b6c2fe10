"""`testtime prm-report`: how well a scorer predicts correctness from partial solutions, and what it buys
best-of-N over majority voting (resumable)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ._common import add_model_args, add_task_args, default_max_tokens, task_options
from ._engine_args import add_engine_args, make_engine, make_scorer

HELP = "PRM quality: AUC from 25/50/75/100% of the steps, best-of-N and weighted vs majority at N=1..16"


def add_arguments(p) -> None:
    add_task_args(p)
    p.add_argument("--n", type=int, default=16, help="candidates per problem; selection is reported at N = 1..n (default: %(default)s)")
    p.add_argument("--reduction", choices=("last", "min", "prod", "mean"), default="last", help="per-step scores -> one score for best-of-N (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    p.add_argument("--out", default=None, help="output directory; rerunning the same command resumes (default: runs/prm-report-<task>-<scorer>)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_model_args(p)
    add_engine_args(p)


def run(args) -> int:
    from ..prm import ReportConfig, format_report, plot_report, prm_report
    from ..strategies import DEFAULT_SAMPLING
    from ..tasks import load_task

    problems = load_task(args.task, split=args.split, data=args.data, limit=args.limit, levels=args.levels, **task_options(args))
    engine = make_engine(args)
    scorer = make_scorer(args, engine)
    sampling = replace(DEFAULT_SAMPLING, temperature=args.temperature, top_p=args.top_p, max_tokens=default_max_tokens(args))
    config = ReportConfig(max_n=args.n, reduction=args.reduction, sampling=sampling, seed=args.seed)
    slug = Path(args.scorer).stem if args.scorer.endswith(".safetensors") else args.scorer
    out = Path(args.out or os.path.join("runs", f"prm-report-{args.task}-{slug}"))
    settings = {"task": args.task, "split": args.split, "limit": args.limit, "levels": args.levels, "model": args.model, "scorer": args.scorer, "scorer_model": args.scorer_model, "scorer_class": type(scorer).__name__}
    report = prm_report(engine, scorer, problems, out, config, settings=settings, use_tqdm=not args.no_progress)
    print(format_report(report))
    png = plot_report(report, out / "prm_report.png", title=f"{args.task} ({args.split}, {report.num_problems} problems) - model {args.model}, scorer {args.scorer} ({type(scorer).__name__})")
    print(f"\nwrote {out / 'report.json'} and {png}")
    return 0
