"""What batching requests buys on this machine: 1 program against 8 programs at once on the scheduler, in process.

Setup: the embedded model, majority with budget 4 per program, exactly `--max-tokens` new tokens per candidate
(`ignore_eos`), the arith test prompts (system + few-shot turns + question: 424-1025 tokens on the problems
used), each program its own problem. One scheduler serves every run with its KV cache reserved up front, as
`testtime serve` does (64 rows x 1024 columns), after one warm-up run of the same programs: fresh memory costs
~1 s per gigabyte to fault in on this VM, which a long-running server pays once. Baseline: the same programs one
at a time. The engine's prefix cache (on by default) is emptied before each measured phase, so each phase reuses
only the few-shot prefixes its own earlier prompts computed (the 8 problems cover the 5 levels), never the
warm-up's. Prints wall time per phase (prefill, decode), the prompt tokens computed and read from the cache, and
the decode-step time at 4 and at 32 rows, with the share of it spent in attention (`scaled_dot_product_attention`
and the shared-prefix `_cascade`, timed with cProfile), so the throughput ratio can be read against where the
time goes.

    python bench/scheduler_batching.py [--programs 8] [--max-tokens 64] [--prefix-cache-tokens 0]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import time

import torch


def run(sched, problems, args) -> dict:
    from testtime import SamplingParams
    from testtime.strategies import make_strategy

    sampling = SamplingParams(temperature=0.8, max_tokens=args.max_tokens, ignore_eos=True)
    steps_before = sched.stats.num_steps

    def body(p):
        return lambda e, s: make_strategy("majority", e, None, n=4, sampling=sampling, seed=1).solve_batch([p])[0]

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    sched.map([body(p) for p in problems], rows=4)
    prof.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    seconds = {}
    for (path, _, name), (_, _, tottime, cumtime, _) in stats.stats.items():
        # torch's kernel shows up as "<built-in method scaled_dot_product_attention ...>"; shared-prefix
        # (cascade) attention is `_cascade`, counted whole (its kernel calls and the merge).
        if "scaled_dot_product_attention" in name:
            seconds["attention"] = seconds.get("attention", 0.0) + tottime
        elif name == "_cascade":
            seconds["attention"] = seconds.get("attention", 0.0) + cumtime
        elif (name, os.path.basename(path)) in (("prefill", "_llama.py"), ("step", "_live.py")):  # the model's prefill, the live batch's decode steps
            seconds[name] = seconds.get(name, 0.0) + cumtime
    return {"wall": wall, "steps": sched.stats.num_steps - steps_before, "rows": 4 * len(problems), **seconds}


def one_at_a_time(sched, problems, args) -> dict:
    """The programs run one after another: wall, phase times and steps summed."""
    total: dict = {}
    for p in problems:
        for key, value in run(sched, [p], args).items():
            total[key] = total.get(key, 0) + value
    total["rows"] = 4
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--programs", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prefix-cache-tokens", type=int, default=8192, help="the engine's prefix cache (0: none)")
    args = ap.parse_args()

    from testtime import TransformersEngine
    from testtime.scheduler import Scheduler
    from testtime.serve._batcher import RESERVE_COLS, RESERVE_ROWS
    from testtime.tasks import load_task

    engine = TransformersEngine("default", seed=0, prefix_cache_tokens=args.prefix_cache_tokens)
    problems = load_task("arith", split="test", limit=args.programs)
    print(f"setup: majority budget 4, {args.max_tokens} tokens per candidate (ignore_eos), arith test prompts, {engine.model.dtype}, "
          f"{engine.device}, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; load {os.getloadavg()[0]:.2f}")
    sched = Scheduler(engine, None, reserve_rows=RESERVE_ROWS, reserve_cols=RESERVE_COLS)
    run(sched, problems, args)  # warm-up, excluded: the cache's pages are faulted in once, as in a server

    def cold(phase):
        """`phase` with the prefix cache emptied first (each phase finds only what it cached itself); adds the
        prompt tokens it computed and read from the cache."""
        if engine.prefix_cache is not None:
            engine.prefix_cache.clear()
        before = engine.usage.copy()
        r = phase(sched, problems, args)
        d = engine.usage - before
        return {**r, "computed": d.num_prefill_tokens, "cached": d.num_cached_prompt_tokens}

    one = cold(one_at_a_time)
    many = cold(run)
    for label, r in (("one at a time", one), (f"{args.programs} at once", many)):
        print(f"{label:>13}: prompt tokens {r['computed']} computed, {r['cached']} from the prefix cache")
        decode = r.get("step", 0.0)
        print(f"{label:>13} ({r['rows']:>2} rows): wall {r['wall']:6.2f} s, prefill {r.get('prefill', 0.0):5.2f} s, decode {decode:6.2f} s over {r['steps']} steps "
              f"= {1000 * decode / max(r['steps'], 1):5.0f} ms/step, of which attention {1000 * r.get('attention', 0.0) / max(r['steps'], 1):5.0f} ms")
    print(f"throughput: {args.programs} programs at once = {one['wall'] / many['wall']:.2f}x the same programs one at a time "
          f"(decode alone {one.get('step', 0) / max(many.get('step', 1e-9), 1e-9):.2f}x); load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
