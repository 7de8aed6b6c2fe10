"""One self-improvement round on the built-in arith task, every stage timed (docs/data-generation.md).

1. sample: best-of-N (n = --n-train, the default PRM head's rewards) on --train-problems of the *train* split,
   with the embedded model;
2. export: the correct candidates as SFT data (`testtime export --format sft --correct-only --max-per-problem K`);
3. finetune: full fine-tuning of the embedded model on them (`testtime finetune`);
4. eval on the first --test-problems of the *test* split: the base model at PRM-weighted@4 against the fine-tuned
   model greedy, paired per problem (exact McNemar test, 95% Wilson intervals); and the fine-tuned model's
   majority and weighted at --n-new.

The weighted runs of the fine-tuned model score with the base model's shipped PRM head read on the *new* model's
hidden states (its fingerprint check is skipped on purpose): whether that head still ranks candidates is measured
as its AUC (final-step score vs correctness) on the new model's candidates, next to its AUC on the base model's.

Every stage resumes: the evals through their run directories, finetune is skipped when its model is written.

    python bench/self_improve.py --out runs/self_improve                       # the full round
    python bench/self_improve.py --out /tmp/si --train-problems 4 --n-train 4 --test-problems 4 --n-new 4 \\
        --max-steps 2 --max-tokens 128                                         # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from testtime.cli import main as testtime_main
from testtime.engines import TransformersEngine
from testtime.eval import EvalConfig, run_eval, wilson_interval
from testtime.eval._metrics import auc, mcnemar_p
from testtime.scorers import PRMHead, PRMHeadScorer, find_head, load_scorer


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/self_improve", help="working directory of the round (default: %(default)s)")
    p.add_argument("--levels", default="1,2,3", help="arith levels (default: %(default)s, where a 135M model has correct traces to learn from)")
    p.add_argument("--train-problems", type=int, default=300, help="train-split problems sampled (default: %(default)s)")
    p.add_argument("--n-train", type=int, default=8, help="best-of-N samples per train problem (default: %(default)s)")
    p.add_argument("--per-problem", type=int, default=4, help="at most this many correct traces per problem (default: %(default)s)")
    p.add_argument("--test-problems", type=int, default=200, help="test-split problems evaluated (default: %(default)s)")
    p.add_argument("--n-new", type=int, default=16, help="the fine-tuned model's majority / weighted budget; 0 skips them (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=-1, help="finetune optimizer steps; -1 is --epochs (default: %(default)s)")
    p.add_argument("--epochs", type=float, default=1.0, help="finetune passes over the data (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-5, help="finetune learning rate (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=384, help="new tokens per candidate (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature, train and test (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    return p.parse_args()


class Stages:
    """Wall time per stage, printed as they finish."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn):
        t0 = time.perf_counter()
        result = fn()
        self.seconds[name] = time.perf_counter() - t0
        print(f"[stage] {name}: {self.seconds[name]:.1f} s", flush=True)
        return result


def evaluate(args, *, split: str, limit: int, strategies: list[str], n: list[int], model: str, scorer_name: str, out: Path, engine, scorer):
    config = EvalConfig(
        task="arith", split=split, limit=limit, levels=[int(x) for x in args.levels.split(",")], strategies=strategies, n=n,
        scorer=scorer_name, model=model, seeds=[args.seed], max_tokens=args.max_tokens, temperature=args.temperature, out=str(out),
    )
    return run_eval(config, engine=engine, scorer=scorer)


def correct_by_problem(rows: list[dict], strategy: str, n: int) -> dict[str, bool]:
    return {r["problem_id"]: bool(r["by_n"][str(n)]["correct"]) for r in rows if r["strategy"] == strategy}


def head_auc(rows: list[dict], strategy: str) -> float | None:
    cands = [c for r in rows if r["strategy"] == strategy for c in r["candidates"] if c.get("score") is not None]
    return auc([c["score"] for c in cands], [bool(c["correct"]) for c in cands])


def accuracy_line(name: str, correct: dict[str, bool]) -> dict:
    k, total = sum(correct.values()), len(correct)
    lo, hi = wilson_interval(k, total)
    print(f"  {name:<28} {k:>4}/{total:<4} {k / max(total, 1):.3f}  [{lo:.3f}, {hi:.3f}]")
    return {"correct": k, "total": total, "accuracy": k / max(total, 1), "ci95": [lo, hi]}


def main() -> int:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"setup: arith levels {args.levels}, train {args.train_problems} problems x {args.n_train} samples, test {args.test_problems} problems, "
          f"T={args.temperature}, max_tokens={args.max_tokens}, fp32, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, {os.cpu_count()} cpus")
    stages = Stages()
    base = stages.run("load base model", lambda: TransformersEngine("default", seed=args.seed))
    base_scorer = load_scorer("default", engine=base)

    stages.run("sample train (bon)", lambda: evaluate(args, split="train", limit=args.train_problems, strategies=["bon"], n=[args.n_train], model="default", scorer_name="default", out=out / "sample_train", engine=base, scorer=base_scorer))
    data = out / "sft.jsonl"
    rc = stages.run("export", lambda: testtime_main(["export", str(out / "sample_train"), "--format", "sft", "--correct-only", "--max-per-problem", str(args.per_problem), "--out", str(data)]))
    if rc:
        return rc
    model_dir = out / "model"
    if not (model_dir / "finetune.json").exists():  # a finished finetune is kept; an unfinished one resumes
        resume = ["--resume"] if any((model_dir / "checkpoints").glob("checkpoint-*")) else []
        rc = stages.run("finetune", lambda: testtime_main(["finetune", "--data", str(data), "--out", str(model_dir), "--max-steps", str(args.max_steps), "--epochs", str(args.epochs), "--lr", str(args.lr), "--seed", str(args.seed), *resume]))
        if rc:
            return rc

    base_test = stages.run("eval base weighted@4", lambda: evaluate(args, split="test", limit=args.test_problems, strategies=["weighted"], n=[4], model="default", scorer_name="default", out=out / "test_base", engine=base, scorer=base_scorer))
    new = stages.run("load fine-tuned model", lambda: TransformersEngine(str(model_dir), seed=args.seed))
    head = PRMHead.load(find_head(base.model))
    head.meta.pop("model", None)  # the base head on the new model's states is what is measured: skip its fingerprint check
    new_scorer = PRMHeadScorer(new, head=head)
    searched = ["majority", "weighted"] if args.n_new else []  # --n-new 0: the fine-tuned model greedy only
    # Greedy and the searches in their own run directories, so a rerun with another --n-new resumes the rest.
    new_test = stages.run("eval new greedy", lambda: evaluate(args, split="test", limit=args.test_problems, strategies=["greedy"], n=[1], model=str(model_dir), scorer_name="base head (smollm2-135m-instruct-arith)", out=out / "test_new", engine=new, scorer=new_scorer))
    new_search = stages.run(f"eval new majority/weighted@{args.n_new}", lambda: evaluate(args, split="test", limit=args.test_problems, strategies=searched, n=[args.n_new], model=str(model_dir), scorer_name="base head (smollm2-135m-instruct-arith)", out=out / f"test_new_at{args.n_new}", engine=new, scorer=new_scorer)) if searched else None

    base_ok = correct_by_problem(base_test.rows, "weighted", 4)
    new_ok = correct_by_problem(new_test.rows, "greedy", 1)
    paired = sorted(set(base_ok) & set(new_ok))
    only_base = sum(base_ok[p] and not new_ok[p] for p in paired)
    only_new = sum(new_ok[p] and not base_ok[p] for p in paired)
    print(f"\ntest, {len(paired)} problems (accuracy, 95% Wilson interval):")
    summary = {
        "args": vars(args),
        "num_sft_records": sum(1 for _ in data.open()),
        "base weighted@4": accuracy_line("base weighted@4", {p: base_ok[p] for p in paired}),
        "new greedy": accuracy_line("fine-tuned greedy", {p: new_ok[p] for p in paired}),
    }
    for s in searched:
        summary[f"new {s}@{args.n_new}"] = accuracy_line(f"fine-tuned {s}@{args.n_new}", correct_by_problem(new_search.rows, s, args.n_new))
    p = mcnemar_p(only_base, only_new)
    print(f"  paired: base right only {only_base}, fine-tuned right only {only_new}; exact McNemar p = {p:.3f}")
    auc_base, auc_new = head_auc(base_test.rows, "weighted"), head_auc(new_search.rows, "weighted") if searched else None
    fmt = lambda a: "n/a (one class, or not run)" if a is None else f"{a:.3f}"
    print(f"  PRM head AUC (final score vs correct): base model's candidates {fmt(auc_base)}, fine-tuned model's {fmt(auc_new)}")
    summary.update({"mcnemar": {"only_base": only_base, "only_new": only_new, "p": p}, "head_auc": {"base": auc_base, "new": auc_new}, "stage_seconds": stages.seconds})
    print("\nstages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.seconds.items()) + f"; total {sum(stages.seconds.values()):.1f} s")
    (out / "self_improve.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"summary: {out / 'self_improve.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
