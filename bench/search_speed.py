"""Beam search against best-of-N on the embedded model, measured in the same run: wall time and where it goes.

Setup (defaults): the first `--problems` arith test problems (the eval's prompt: system + 4 worked examples +
question), beam search n=16, beam width M=4 against best-of-N@16 (naive, the same scorer scoring each
candidate once), both at T=0.8 and the same `--max-tokens`, fp32 on CPU. A short warm-up (one problem, 32 tokens) runs
first for each strategy and is excluded. Engine and scorer time are split by timing every `score` call.

Prints, per strategy: wall time, generated / prefilled / scored tokens, engine and scorer calls, decode-row
utilization (generated tokens / row-steps through the decode forward: idle rows of a step-synchronous search
cost compute too), and the ratio beam / BoN (the target is <= 1.5).

    python bench/search_speed.py [--problems 50] [--n 16] [--beam-width 4] [--scorer default] [--max-tokens 384]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from testtime.grading import is_equiv


class TimedScorer:
    """A scorer proxy that adds up the wall time of `score` (and `score_hidden`) calls; every other attribute is
    the real scorer's, so a head on the generator still scores live rows from their hidden states."""

    def __init__(self, scorer) -> None:
        self.scorer = scorer
        self.seconds = 0.0

    @property
    def usage(self):
        return self.scorer.usage

    def __getattr__(self, name):
        if name.startswith("__") or name in ("scorer", "seconds"):
            raise AttributeError(name)
        value = getattr(self.scorer, name)
        if name != "score_hidden":
            return value

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed

    def score(self, requests):
        t0 = time.perf_counter()
        try:
            return self.scorer.score(requests)
        finally:
            self.seconds += time.perf_counter() - t0


def run(strategy, problems, scorer: TimedScorer) -> dict:
    engine = strategy.engine
    e0 = engine.usage.copy()
    s0, st0 = scorer.usage.copy(), scorer.seconds
    t0 = time.perf_counter()
    results = strategy.solve(problems)
    wall = time.perf_counter() - t0
    e = engine.usage - e0
    s = scorer.usage - s0
    return {
        "wall": wall,
        "scorer_s": scorer.seconds - st0,
        "generated": sum(r.usage.num_generated_tokens for r in results),
        "prefill": sum(r.usage.num_prefill_tokens for r in results),
        "scored": s.num_tokens,
        "engine_calls": e.num_calls,
        "scorer_calls": s.num_calls,
        "utilization": e.num_generated_tokens / max(e.num_decoded_tokens, 1),  # row-steps of every live batch
        "forwards": e.num_forward_passes,
        "answers": sum(r.answer is not None for r in results),
        "correct": sum(r.answer is not None and is_equiv(p.answer, r.answer) for r, p in zip(results, problems, strict=True)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=50)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--beam-width", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=384, help="per candidate, both strategies (the arith eval default)")
    ap.add_argument("--scorer", default="default", help="default, self-eval, oracle, prm-head, ... (load_scorer name)")
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--strategies", default="bon,beam", help="comma-separated, run in this order: bon, beam, dvts, pf")
    args = ap.parse_args()

    from testtime.engines import SamplingParams, TransformersEngine
    from testtime.scorers import load_scorer
    from testtime.strategies import (
        DVTS,
        BeamSearch,
        BeamSearchParams,
        BestOfN,
        DVTSParams,
        ParticleFilter,
        ParticleFilterParams,
        SamplingStrategyParams,
    )
    from testtime.tasks import load_task

    engine = TransformersEngine("default", seed=0, max_batch_size=args.max_batch_size)
    scorer = TimedScorer(load_scorer(args.scorer, engine=engine))
    sampling = SamplingParams(temperature=0.8, top_p=1.0, max_tokens=args.max_tokens)
    problems = load_task("arith", split="test", limit=args.problems + 1)
    warm, problems = problems[:1], problems[1:]
    makers = {
        "bon": lambda sp: BestOfN(engine, scorer, params=SamplingStrategyParams(n=args.n), sampling=sp),
        "beam": lambda sp: BeamSearch(engine, scorer, params=BeamSearchParams(n=args.n, beam_width=args.beam_width), sampling=sp),
        "dvts": lambda sp: DVTS(engine, scorer, params=DVTSParams(n=args.n, beam_width=args.beam_width), sampling=sp),
        "pf": lambda sp: ParticleFilter(engine, scorer, params=ParticleFilterParams(n=args.n), sampling=sp),
    }
    warm_sampling = SamplingParams(temperature=0.8, top_p=1.0, max_tokens=32)
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    print(
        f"setup: {len(problems)} arith test problems, n={args.n}, beam width {args.beam_width}, max_tokens {args.max_tokens}, T=0.8, "
        f"scorer {args.scorer} ({type(scorer.scorer).__name__}), engine max_batch_size {args.max_batch_size}, max_step_tokens {BeamSearchParams().max_step_tokens}, "
        f"{engine.model.dtype}, {engine.device}, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        flush=True,
    )
    out = {}
    with torch.inference_mode():
        for name in names:
            run(makers[name](warm_sampling), warm, scorer)  # warm-up (32 tokens), excluded
            strat = makers[name](sampling)
            out[name] = r = run(strat, problems, scorer)
            print(
                f"{name:>5}: wall {r['wall']:7.1f}s (engine+search {r['wall'] - r['scorer_s']:7.1f}s, scorer {r['scorer_s']:6.1f}s)  "
                f"generated {r['generated']:>7}  prefilled {r['prefill']:>7}  scored {r['scored']:>8}  "
                f"engine calls {r['engine_calls']:>4}  scorer calls {r['scorer_calls']:>4}  forwards {r['forwards']:>5}  "
                f"row utilization {r['utilization']:.2f}  answered {r['answers']}/{len(problems)}  exact-match {r['correct']}",
                flush=True,
            )
    if "bon" in out:
        base = out["bon"]
        for name, r in out.items():
            if name != "bon":
                print(
                    f"ratio {name}/bon: wall {r['wall'] / base['wall']:.2f}x (target beam <= 1.5x); "
                    f"engine+search part {(r['wall'] - r['scorer_s']) / max(base['wall'] - base['scorer_s'], 1e-9):.2f}x, "
                    f"scorer part {r['scorer_s'] / max(base['scorer_s'], 1e-9):.2f}x, generated tokens {r['generated'] / max(base['generated'], 1):.2f}x"
                )


if __name__ == "__main__":
    main()
