"""`testtime optimize`: run (or reuse) candidate strategies on a dev split and write the compute-optimal
policy: per difficulty level and budget, the best strategy and its hyper-parameters."""

from __future__ import annotations

import os

from ._common import add_model_args, add_task_args, ints, names, run_eval_from_args
from ._engine_args import add_engine_args
from ._ray_args import add_ray_args

HELP = "learn a compute-optimal policy (strategy per difficulty level and budget) on a dev split"


def add_arguments(p) -> None:
    add_task_args(p)
    p.add_argument("--strategies", type=names, default=["majority", "bon", "weighted"], help="candidate strategies, comma-separated; one with a scorer (weighted, bon) is needed for predicted difficulty (default: majority,bon,weighted)")
    p.add_argument("--n", type=ints("--n"), default=[4, 16, 64], help="budgets, comma-separated; a search is judged at the largest of these <= N - probe samples (default: 4,16,64)")
    p.add_argument("--seed", type=ints("--seed"), default=[0], help="seeds, comma-separated (default: 0)")
    p.add_argument("--out", default=None, help="eval run directory; an existing run with the same settings is reused and extended (default: runs/optimize-<task>-<split>)")
    p.add_argument("--extra-runs", type=names, default=[], help="more stored eval runs of the same task, split, model, scorer and sampling, comma-separated, whose rows join the dev run's: e.g. a search run at N - probe samples, the budget it gets after the probe (default: none)")
    p.add_argument("--policy-out", default=None, help="policy file to write (default: <out>/policy.json)")
    p.add_argument("--difficulty", default=None, help="difficulty JSON from `testtime difficulty` (default: computed from the run's own samples)")
    p.add_argument("--probe-samples", type=int, default=4, help="probe samples for the predicted level (ignored with --difficulty) (default: %(default)s)")
    p.add_argument("--reduction", default="last", help="probe score reduction: last, min, prod, mean (ignored with --difficulty) (default: %(default)s)")
    p.add_argument("--prior-strength", default="auto", help="pseudo-problems of pooled (all-level) evidence each level's dev accuracy is shrunk with before ranking; 0 ranks by the level alone; 'auto' picks it by leave-one-problem-out dev accuracy (default: auto)")
    p.add_argument("--skip-probe", choices=("auto", "never"), default="auto", help="auto: no probe at a budget where one strategy for every level, given the whole budget, answers at least as many dev problems (leave-one-problem-out) as choosing by level; never: always probe (default: %(default)s)")
    p.add_argument("--bins", choices=("predicted", "oracle"), default="predicted", help="group dev problems by predicted levels (as online) or oracle levels (default: %(default)s)")
    p.add_argument("--batch-problems", type=int, default=0, help="problems per chunk, the resume unit (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_model_args(p)
    add_engine_args(p)
    add_ray_args(p)


def prior_strength_arg(text: str) -> float | str:
    """--prior-strength: 'auto' or a number >= 0."""
    from .._errors import ValidationError
    from ..eval.optimize import AUTO

    if text == AUTO:
        return AUTO
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ValidationError(f"--prior-strength must be 'auto' or a number >= 0, got {text!r}.", parameter="prior_strength", value=text)
    return value


def run(args) -> int:
    from ..eval.difficulty import Difficulty, compute_difficulty
    from ..eval.optimize import (
        candidate_variants,
        extra_run_rows,
        format_policy,
        in_sample_accuracy,
        learn_policy,
        merge_rows,
    )

    candidate_variants(args.strategies)  # bad names and numbers fail before the model loads
    prior = prior_strength_arg(args.prior_strength)
    out = args.out or os.path.join("runs", f"optimize-{args.task}-{args.split}")
    extra: list[dict] = []

    def load_extra(config) -> None:  # before the model loads: a mismatched run fails in a second
        extra.extend(extra_run_rows(args.extra_runs, config, strategies=args.strategies))

    config, result = run_eval_from_args(args, strategies=args.strategies, n=args.n, out=out, before_model=load_extra, use_ray=True)
    ids = {r["problem_id"] for r in result.rows}
    rows = merge_rows(result.rows + [r for r in extra if r["problem_id"] in ids])
    if args.difficulty:
        diff = Difficulty.load(args.difficulty)
    else:
        diff = compute_difficulty(rows, num_probe=args.probe_samples, reduction=args.reduction, task=args.task, split=args.split, source=out)
        print(f"difficulty: {diff.save(os.path.join(out, 'difficulty.json'))}")
    policy = learn_policy(
        rows,
        diff,
        strategies=args.strategies,
        budgets=config.n,
        bins=args.bins,
        task=args.task,
        split=args.split,
        model=args.model,
        scorer=config.scorer,
        sampling={"temperature": config.temperature, "top_p": config.top_p, "max_tokens": config.max_tokens},
        sources=[out, *args.extra_runs],
        prior_strength=prior,
        skip_probe=args.skip_probe,
    )
    path = policy.save(args.policy_out or os.path.join(out, "policy.json"))
    print(format_policy(policy))
    for n, (acc, singles) in in_sample_accuracy(policy, rows, diff).items():
        best = max(singles.items(), key=lambda kv: kv[1], default=("-", 0.0))
        print(f"N={n}: policy {acc:.3f} on dev (in-sample, optimistic); best single {best[0]} {best[1]:.3f}")
    if policy.prior_strength_cv:
        print("prior strength (leave-one-problem-out dev accuracy): " + ", ".join(f"{m}: {a:.3f}" for m, a in policy.prior_strength_cv.items()) + f" -> {policy.prior_strength:g}")
    for n, cv in policy.budget_cv.items():
        how = "no probe" if int(n) in policy.probe_free_budgets else "probe, then by level"
        print(f"N={n}: leave-one-problem-out dev accuracy {cv['by_level']:.3f} by level, {cv['probe_free']:.3f} without a probe -> {how}")
    if policy.probe_join_accuracy:
        acc = policy.probe_join_accuracy
        print(f"searches after a probe: dev accuracy {acc['joined']:.3f} with the probe's answers in their final choice, {acc['apart']:.3f} without -> " + ("joined" if policy.probe_joins else "apart"))
    print(f"policy: {path}  (use: testtime eval --strategy optimal --policy {path})")
    return 0
