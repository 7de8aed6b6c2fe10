"""What batching requests buys on this machine: 1 program against 8 programs at once on the scheduler, in process.

Setup: the embedded model, majority with budget 4 per program, exactly `--max-tokens` new tokens per candidate
(`ignore_eos`), the arith test prompts (system + few-shot turns + question, ~415-567 tokens), each program its
own problem. Prints wall time per phase (prefill, decode) and the decode-step time at 4 and at 32 rows, with the
share of it spent in attention (`scaled_dot_product_attention`, timed with cProfile), so the throughput ratio
can be read against where the time goes.

    python bench/scheduler_batching.py [--programs 8] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import time

import torch


def run(engine, problems, args) -> dict:
    from testtime import SamplingParams
    from testtime.scheduler import Scheduler
    from testtime.strategies import make_strategy

    sampling = SamplingParams(temperature=0.8, max_tokens=args.max_tokens, ignore_eos=True)
    sched = Scheduler(engine, None, reserve_rows=4 * len(problems))

    def body(p):
        return lambda e, s: make_strategy("majority", e, None, sampling=sampling, seed=1).solve_batch([p], 4)[0]

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    sched.map([body(p) for p in problems], rows=4)
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    seconds = {}
    for (_, _, name), (_, _, tottime, cumtime, _) in stats.stats.items():
        # torch's kernel shows up as "<built-in method scaled_dot_product_attention ...>".
        key = "attention" if "scaled_dot_product_attention" in name else name
        if key in ("attention", "prefill", "step"):
            seconds[key] = seconds.get(key, 0.0) + (tottime if key == "attention" else cumtime)
    return {"wall": wall, "steps": sched.stats.num_steps, "rows": 4 * len(problems), **seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--programs", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()

    from testtime import TransformersEngine
    from testtime.tasks import load_task

    engine = TransformersEngine("default", seed=0)
    problems = load_task("arith", split="test", limit=args.programs + 2)
    print(f"setup: majority budget 4, {args.max_tokens} tokens per candidate (ignore_eos), arith test prompts, {engine.model.dtype}, "
          f"{engine.device}, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; load {os.getloadavg()[0]:.2f}")
    run(engine, problems[:1], args)  # warm-up, excluded
    one = run(engine, problems[1:2], args)
    many = run(engine, problems[2 : 2 + args.programs], args)
    for label, r in (("1 program", one), (f"{args.programs} programs", many)):
        decode = r.get("step", 0.0)
        print(f"{label:>11} ({r['rows']:>2} rows): wall {r['wall']:6.2f} s, prefill {r.get('prefill', 0.0):5.2f} s, decode {decode:6.2f} s over {r['steps']} steps "
              f"= {1000 * decode / max(r['steps'], 1):5.0f} ms/step, of which attention {1000 * r.get('attention', 0.0) / max(r['steps'], 1):5.0f} ms")
    print(f"throughput: {args.programs} programs at once = {args.programs * one['wall'] / many['wall']:.2f}x one program at a time "
          f"(decode alone {args.programs * one.get('step', 0) / max(many.get('step', 1e-9), 1e-9):.2f}x)")


if __name__ == "__main__":
    main()
