"""`testtime difficulty`: oracle and model-predicted difficulty of every problem of a split, stored as JSON."""

from __future__ import annotations

import os

from ._common import add_model_args, add_task_args, ints, run_eval_from_args
from ._engine_args import add_engine_args

HELP = "per-problem difficulty: oracle pass@1 levels and model-predicted levels (PRM score of a few samples)"


def add_arguments(p) -> None:
    add_task_args(p)
    p.add_argument("--samples", type=int, default=16, help="samples per problem for the oracle pass@1 (default: %(default)s)")
    p.add_argument("--probe-samples", type=int, default=4, help="samples whose mean score predicts the level, as `optimal` does online (default: %(default)s)")
    p.add_argument("--reduction", default="last", help="how step scores reduce for the prediction: last, min, prod, mean (default: %(default)s)")
    p.add_argument("--num-levels", type=int, default=5, help="difficulty levels, by quantile (default: %(default)s)")
    p.add_argument("--run", default=None, help="compute from this stored eval run directory instead of sampling (default: sample into --out)")
    p.add_argument("--out", default=None, help="run directory for the samples; rerunning resumes (default: runs/difficulty-<task>-<split>)")
    p.add_argument("--output", default=None, help="difficulty JSON file (default: <run directory>/difficulty.json)")
    p.add_argument("--seed", type=ints("--seed"), default=[0], help="seeds, comma-separated; every seed's samples count (default: 0)")
    p.add_argument("--batch-problems", type=int, default=0, help="problems per chunk, the resume unit (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_model_args(p)
    add_engine_args(p)


def run(args) -> int:
    from .._errors import check
    from ..eval.difficulty import compute_difficulty
    from ..eval.report import load_run

    check(args.samples >= 1, f"--samples must be >= 1, got {args.samples}.", parameter="samples", value=args.samples)
    check(1 <= args.probe_samples <= args.samples, f"--probe-samples must be in [1, --samples], got {args.probe_samples}.", parameter="probe_samples", value=args.probe_samples)
    if args.run:
        run_dir = args.run
        data = load_run(run_dir)
        rows = data.rows
        ident = data.meta.get("identity", {})
        task, split = ident.get("task", args.task), ident.get("split", args.split)
    else:
        run_dir = args.out or os.path.join("runs", f"difficulty-{args.task}-{args.split}")
        # one shared generation; "weighted" makes it scored
        rows = run_eval_from_args(args, strategies=["majority", "weighted"], n=[args.samples], out=run_dir)[1].rows
        task, split = args.task, args.split
    diff = compute_difficulty(rows, num_probe=args.probe_samples, reduction=args.reduction, num_levels=args.num_levels, task=task, split=split, source=str(run_dir))
    path = diff.save(args.output or os.path.join(run_dir, "difficulty.json"))
    print(diff.table())
    if diff.predicted_edges:
        print("predicted-score edges (ascending):", ", ".join(f"{x:.4f}" for x in diff.predicted_edges))
    else:
        print("no scores in the run: predicted difficulty needs a scored sampling strategy (weighted or bon)")
    print(f"difficulty: {path}")
    return 0
