"""Replay Speculative Rejection settings on a stored `testtime bench spr` run (likelihood reward), no generation.

Every SpR setting (initial n, alpha, decision schedule, or the paper's memory budget) is replayed on the stored
best-of-N samples (`testtime.eval.spr_replay.simulate_spr`) and analysed exactly like live SpR rows: improvement
score, token-model speedup, GPU-batch-model speedup. Use it on a tuning part of the prompts, then run the chosen
settings live on the test part:

    python scripts/spr_tune.py runs/spr-alpaca-tune --n 64,128,256 --alpha 0.3,0.5,0.7,0.8,0.9 \
        --schedules 8.16.32.64.128,16.32.64.128,32.64.128.256,mem

`mem` is the paper's memory-triggered schedule with the KV memory of a BoN --batch-n batch per prompt (prompt
length read from the run's BoN prefill).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from testtime.eval.spr_bench import SprBenchConfig, analyze, format_spr_table
from testtime.eval.spr_replay import simulate_spr
from testtime.strategies import SpeculativeRejectionParams
from testtime.tasks import Problem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a bench spr directory whose BoN candidates carry traces")
    ap.add_argument("--n", default="64,128,256", help="SpR initial n values (default: %(default)s)")
    ap.add_argument("--alpha", default="0.3,0.5,0.7,0.9", help="alphas (default: %(default)s)")
    ap.add_argument("--schedules", default="16.32.64.128,32.64.128.256,mem", help="decision schedules, dot-separated tokens, or mem (default: %(default)s)")
    ap.add_argument("--batch-n", type=int, default=32, help="the GPU-batch model's N0 and the memory of 'mem' (default: %(default)s)")
    ap.add_argument("--max-tokens", type=int, default=512, help="the run's max tokens, for the memory budget (default: %(default)s)")
    ap.add_argument("--top", type=int, default=12, help="print the best this many variants by token-model speedup (default: %(default)s)")
    args = ap.parse_args()

    rows = [json.loads(line) for line in (Path(args.run) / "results.jsonl").read_text().splitlines() if line.strip()]
    bon = {r["problem_id"]: r for r in rows if r["method"] == "bon"}
    ids = sorted(bon)
    bon_n = sorted({2**k for k in range(3, 12) if 2**k <= min(len(r["candidates"]) for r in bon.values())})
    sim = []
    names = []
    for n in [int(x) for x in args.n.split(",")]:
        for alpha in [float(x) for x in args.alpha.split(",")]:
            for sched in args.schedules.split(","):
                if sched == "mem":
                    params = SpeculativeRejectionParams(n=n, alpha=alpha, kv_budget=1)
                    name = f"spr-{alpha:g}-n{n}-mem{args.batch_n}"
                else:
                    params = SpeculativeRejectionParams(n=n, alpha=alpha, decision_tokens=[int(t) for t in sched.split(".")])
                    name = f"spr-{alpha:g}-n{n}-d{sched}"
                names.append(name)
                for pid in ids:
                    prompt = bon[pid]["usage"]["num_prefill_tokens"]
                    kv = args.batch_n * (prompt + args.max_tokens) if sched == "mem" else None
                    sim.append({"method": name, "problem_id": pid, **simulate_spr(bon[pid]["candidates"], params, prompt=prompt, kv=kv)})
    config = SprBenchConfig(task="fake", limit=None, bon_n=bon_n, n=max(int(x) for x in args.n.split(",")), alphas=[0.5], batch_n=args.batch_n, max_tokens=args.max_tokens)
    report = analyze(list(bon.values()) + sim, config, [Problem(id=pid) for pid in ids])
    best = sorted((r for r in report.rows if r.method != "bon"), key=lambda r: -(r.speedup or 0))[: args.top]
    table = format_spr_table([r for r in report.rows if r.method == "bon"] + best, num_problems=report.num_problems, num_scored=report.num_scored_problems, baseline_n=config.baseline_n, batch_n=args.batch_n)
    print(f"{len(names)} variants replayed on {len(ids)} prompts of {args.run}; the best {len(best)} by token-model speedup:\n")
    print(table)


if __name__ == "__main__":
    main()
