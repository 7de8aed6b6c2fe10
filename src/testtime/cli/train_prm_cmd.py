"""`testtime train-prm`: label step prefixes by Monte-Carlo rollouts and train a PRM head (resumable)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._errors import ValidationError
from ._common import add_local_engine_args, add_task_args, default_max_tokens, ints, task_options
from ._engine_args import make_local_engine

HELP = "train a PRM head on the generator's hidden states from Monte-Carlo step labels (resumable)"

_DEFAULTS = {"split": "train"}


def add_arguments(p) -> None:
    add_task_args(p)
    p.set_defaults(**_DEFAULTS)
    p.add_argument("--model", default="default", help="generator: 'default' (embedded SmolLM2-135M-Instruct), a local directory or a hub id (default: %(default)s)")
    add_local_engine_args(p)
    p.add_argument("--num-samples", type=int, default=4, help="solutions sampled per problem (default: %(default)s)")
    p.add_argument("--num-rollouts", type=int, default=4, help="completions per step prefix for its MC value (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature of solutions and rollouts (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=None, help="new tokens per solution or rollout (default: 512, arith 384)")
    p.add_argument("--seed", type=int, default=0, help="seed of every sample and rollout (default: %(default)s)")
    p.add_argument("--layers", type=ints("--layers"), default=None, help="only try this layer set, e.g. -1 or 16,-1 (default: try several)")
    p.add_argument("--kind", choices=("logistic", "mlp"), default=None, help="only try this head kind (default: both)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of problems held out for validation (default: %(default)s)")
    p.add_argument("--out", default=None, help="working directory: labels.jsonl, features.pt, head files (default: runs/prm-<task>)")
    p.add_argument("--head-out", default=None, help="where to write the head (default: OUT/head.safetensors)")
    p.add_argument("--label-only", action="store_true", help="stop after labelling (run again later to train)")
    p.add_argument("--chunk-size", type=int, default=8, help="problems labelled together, the resume unit (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _check_settings(out: Path, settings: dict) -> None:
    path = out / "settings.json"
    if path.exists():
        old = json.loads(path.read_text())
        for k, v in settings.items():
            if old.get(k) != v:
                raise ValidationError(f"{out} holds labels made with different settings ({k}: {old.get(k)!r} there, {v!r} now); use another --out, or the same settings to resume.", parameter="out")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")


def run(args) -> int:
    from ..prm import FEATURE_LAYERS, LabelParams, TrainParams, build_step_data, label_problems, train_head
    from ..tasks import load_task

    if args.chunk_size < 1:  # before the task and the model load
        raise ValidationError(f"--chunk-size must be >= 1, got {args.chunk_size}.", parameter="chunk_size", value=args.chunk_size)
    problems = load_task(args.task, split=args.split, data=args.data, limit=args.limit, levels=args.levels, **task_options(args))
    params = LabelParams(num_samples=args.num_samples, num_rollouts=args.num_rollouts, temperature=args.temperature, max_tokens=default_max_tokens(args), seed=args.seed)
    train = TrainParams(val_fraction=args.val_fraction, seed=args.seed)
    if args.layers:
        train.layer_sets = [args.layers]
    if args.kind:
        train.kinds = [args.kind]
    out = Path(args.out or os.path.join("runs", f"prm-{args.task}"))
    settings = {"task": args.task, "split": args.split, "data": args.data, "levels": args.levels, "model": args.model, "num_samples": params.num_samples, "num_rollouts": params.num_rollouts, "temperature": params.temperature, "max_tokens": params.max_tokens, "seed": params.seed}
    _check_settings(out, settings)
    engine = make_local_engine(args)
    rows = label_problems(engine, problems, out / "labels.jsonl", params, chunk_size=args.chunk_size, use_tqdm=not args.no_progress)
    num_steps = sum(s["num_steps"] for r in rows for s in r["samples"])
    num_correct = sum(s["correct"] for r in rows for s in r["samples"])
    num_solutions = sum(len(r["samples"]) for r in rows)
    print(f"labelled {len(rows)} problems: {num_solutions} solutions ({num_correct} correct), {num_steps} steps, {sum(len(r['prefix_values']) for r in rows)} prefixes rolled out")
    if args.label_only:
        return 0
    layers = sorted({layer for s in train.layer_sets for layer in s} | set(FEATURE_LAYERS))
    data = build_step_data(engine, problems, rows, out / "features.pt", layers=layers, use_tqdm=not args.no_progress)
    head, tried = train_head(data, train, num_problems=len(problems), engine=engine, meta={"generator": args.model, "labels": settings, "command": "testtime train-prm " + " ".join(_argv(args))})
    print(f"{'layers':<10} {'kind':<9} " + " ".join(f"{k:>8}" for k in ("AUC@25%", "AUC@50%", "AUC@75%", "AUC@100%", "mean")) + "   (validation, final correctness)")
    for t in tried:
        aucs = [t["val_auc"][str(f)] for f in (0.25, 0.5, 0.75, 1.0)]
        print(f"{','.join(map(str, t['layers'])):<10} {t['kind']:<9} " + " ".join(f"{(a if a is not None else float('nan')):>8.3f}" for a in aucs) + f" {t['val_auc_mean']:>8.3f}")
    path = head.save(args.head_out or out / "head.safetensors")
    (out / "tried.json").write_text(json.dumps(tried, indent=2) + "\n")
    print(f"chosen: layers {head.layers}, {head.meta['kind']}; head written to {path} (use it with --scorer {path})")
    return 0


def _argv(args) -> list[str]:
    """The flags that shaped this head, for its metadata (so the shipped head says how to reproduce it)."""
    keys = ["task", "split", "limit", "levels", "model", "num_samples", "num_rollouts", "temperature", "max_tokens", "seed", "layers", "kind", "val_fraction"]
    out = []
    for k in keys:
        v = getattr(args, k, None)
        if v is None or v == _DEFAULTS.get(k):
            continue
        out += [f"--{k.replace('_', '-')}", ",".join(map(str, v)) if isinstance(v, list) else str(v)]
    return out
