"""Speculative Rejection replayed on best-of-N's stored samples, for rewards computed from the samples' own
traces (the confidence family: the generator's likelihood of its answer, `confidence:logprob`).

SpR with initial n draws the same seeded samples as best-of-N's first n (candidate j is BoN's candidate j), and
a likelihood reward of a partial answer is the mean logprob of its first t tokens, which BoN's stored trace
holds. So every SpR setting (n, alpha, decision schedule, memory budget) can be replayed on one BoN run with no
generation: the decision points, keep counts and final choice use the strategy's own rules
(`next_decision_point`, `keep_count`, best final reward among the finished). The replay ignores one thing a
live run has: the floating-point differences of another batch shape, which can flip a sampled token now and
then, so a live SpR run and its replay agree on almost every candidate, not always on all.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..scorers import ConfidenceTrace, confidence_metric
from ..strategies.speculative_rejection import SpeculativeRejectionParams, keep_count, next_decision_point

__all__ = ["simulate_spr"]


def _steps(c: dict) -> int:
    return c["num_tokens"] + (1 if c.get("finish_reason") == "eos" else 0)


def simulate_spr(candidates: Sequence[dict], params: SpeculativeRejectionParams, *, metric: str = "logprob", prompt: int = 0, kv: int | None = None) -> dict:
    """A bench row (`method`-less) of SpR on the first `params.n` stored candidates: each candidate cut where SpR
    rejected it, its score (final if it finished, else its partial reward at the rejection), the choice, usage
    and rounds. `prompt` and `kv` give memory-triggered decisions as in a live run with `kv_budget=kv`."""
    n = params.n
    traces = [ConfidenceTrace.from_dict(c["trace"]) for c in candidates[:n]]
    end = [_steps(c) for c in candidates[:n]]  # the decode step at which each candidate finished
    out = [{"index": j, "num_tokens": 0, "finish_reason": None, "score": 0.0, "text": "", "trace": {}} for j in range(n)]
    live, t, rounds = list(range(n)), 0, []
    while live:
        point = next_decision_point(params, t, len(live), prompt, kv)
        t = point if point is not None else t  # None: the survivors run to their end
        still = []
        for j in live:
            if point is None or end[j] <= t:  # finished before the decision: archived with its final reward
                c = candidates[j]
                out[j].update(num_tokens=c["num_tokens"], finish_reason=c["finish_reason"], score=c["score"], text=c.get("text", ""), trace=c["trace"])
            else:
                out[j].update(num_tokens=t, score=confidence_metric(_prefix(traces[j], t), metric))
                still.append(j)
        kept = sorted(sorted(still, key=lambda j: (-out[j]["score"], j))[: keep_count(params.alpha, len(still))])
        rounds.append({"num_tokens": t, "num_live": len(still), "num_finished": len(live) - len(still), "num_rejected": len(still) - len(kept)})
        live = kept
    finished = [c for c in out if c["finish_reason"] is not None]
    best = min(finished, key=lambda c: (-(c["score"] or 0.0), c["index"]), default=None)
    gen = sum(c["num_tokens"] for c in out)
    return {
        "n": n,
        "selected": None if best is None else best["index"],
        "candidates": out,
        "rounds": rounds,
        "usage": {"num_generated_tokens": gen, "num_scored_tokens": 0, "wall_time": 0.0},
    }


def _prefix(trace: ConfidenceTrace, t: int) -> ConfidenceTrace:
    return ConfidenceTrace(logprob=trace.logprob[:t], confidence=trace.confidence[:t], certainty=trace.certainty[:t])
