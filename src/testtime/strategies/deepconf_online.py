"""DeepConf online (Fu et al. 2025, "Deep Think with Confidence", section 3.2, Algorithm 2): stop a trace the
moment its confidence drops, and stop sampling once the vote is settled.

1. Warm-up: sample `warmup` traces to the end. Their confidences (lowest group confidence by default) set the
   stopping threshold s: the (100 - 100 keep)-th percentile, so keep = 0.1 (DeepConf-low) keeps only traces as
   confident as the warm-up's top 10%, keep = 0.9 (DeepConf-high) all but its bottom 10%; the default 0.25
   sits between them (chosen on a dev split, see `DeepConfOnlineParams.keep`).
2. The remaining n - warmup traces run in the live batch, each watched by a `ConfidenceStop`: the moment the
   mean token confidence of its last `window` tokens falls below s it is dropped (`reorder`; on the in-process
   engine its rows leave the KV cache, nothing is re-prefilled). Its tokens were generated and are counted.
3. Consensus: whenever the leading answer class holds at least `consensus` (the paper's tau, 0.95) of the
   confidence-weighted votes of every finished trace (warm-up and completed), the problem stops and its
   running traces are dropped. The answer is the confidence-weighted vote over the finished traces at or
   above s, as in the reference code. It is checked after the warm-up and every
   `check_every` tokens while the remaining traces run (they run side by side, not one after another as in
   the paper's description, so a stop saves the tokens the unfinished ones would still have generated).

Candidates are the n traces in index order; a trace stopped early keeps its partial text with
`finish_reason=None` and takes no part in the vote. With the same seed, candidate j is the same sample that
`majority` or `deepconf` draw as their candidate j (the remaining traces are added as completions
warmup, warmup + 1, ... of the same request), so online and offline runs compare trace for trace (up to the
floating-point differences of another batch shape, which can flip a sampled token now and then).

Differences from the reference code, on purpose: answers are grouped by math equivalence, not string match;
tokens of traces stopped early are counted (the reference counts them too); and a completed trace whose
lowest group confidence is below s is left out of the vote, as the reference does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .._errors import check, problem_context
from ..engines import ConfidenceStop, Engine, Request, SamplingParams
from ..grading import group_answers
from ..scorers import Scorer
from ..tasks import Problem
from ._base import (
    DEFAULT_SAMPLING,
    Strategy,
    as_problem_list,
    check_n,
    in_groups,
    problem_seed,
    split_usage,
    to_candidate,
    with_logprobs,
)
from ._confidence import ConfidenceParams, candidate_confidence, confidence_threshold, vote_weight
from ._select import best_of_n, weighted_vote
from ._types import Candidate, SolveResult

__all__ = ["DeepConfOnline", "DeepConfOnlineParams"]

AUTO_WARMUP_FRACTION = 0.25
DEFAULT_MAX_ROWS = 256


@dataclass
class DeepConfOnlineParams(ConfidenceParams):
    """Knobs of online DeepConf."""

    n: int = 16
    """Traces per problem at most (the budget), >= 1."""
    keep: float = 0.25
    """The threshold is the top-`keep` point of the warm-up confidences, in (0, 1]: 0.1 is DeepConf-low, 0.9
    DeepConf-high. The default, between them, was chosen on arith's dev split by replaying stored traces
    (scripts/deepconf_tune.py, BENCHMARKS.md): with a warm-up of 4 traces at n = 16, the 90th percentile is
    nearly the warm-up's best trace and DeepConf-low stops almost every other trace."""
    warmup: int | None = None
    """Warm-up traces (the paper's N_init), in [1, n]; None: a quarter of n, at least 2 (the paper: 16 of 512;
    small budgets need a larger share for the percentile to mean anything)."""
    consensus: float = 0.95
    """Stop sampling a problem once its leading answer holds this share of the vote weight, in (0, 1]; 1.0
    stops only on a unanimous vote."""
    check_every: int = 16
    """Tokens between consensus checks while the remaining traces run, >= 1."""
    max_rows: int = DEFAULT_MAX_ROWS
    """Rows started together: problems run in groups of max(1, max_rows // n)."""

    def __post_init__(self) -> None:
        check_n(self.n)
        check(isinstance(self.keep, (int, float)) and not isinstance(self.keep, bool) and 0 < self.keep <= 1, f"`keep` must be in (0, 1], got {self.keep!r}.", parameter="keep", value=self.keep)
        check(self.warmup is None or (isinstance(self.warmup, int) and not isinstance(self.warmup, bool) and self.warmup >= 1), f"`warmup` must be None or an integer >= 1, got {self.warmup!r}.", parameter="warmup", value=self.warmup)
        check(isinstance(self.consensus, (int, float)) and not isinstance(self.consensus, bool) and 0 < self.consensus <= 1, f"`consensus` must be in (0, 1], got {self.consensus!r}.", parameter="consensus", value=self.consensus)
        for name in ("check_every", "max_rows"):
            v = getattr(self, name)
            check(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"`{name}` must be an integer >= 1, got {v!r}.", parameter=name, value=v)
        self.check_confidence()

    def warmup_for(self, n: int) -> int:
        w = self.warmup if self.warmup is not None else max(2, math.ceil(AUTO_WARMUP_FRACTION * n))
        return min(w, n)


@dataclass
class _Problem:
    """One problem's state during a solve."""

    problem: Problem
    candidates: list[Candidate]
    confidences: dict[int, float]
    threshold: float | None = None
    stopped_low: int = 0
    """Traces dropped because their confidence fell below the threshold."""
    stopped_consensus: int = 0
    """Traces dropped unfinished because the vote was settled."""
    done: bool = False

    def voters(self, metric: str, *, filtered: bool = True) -> list[Candidate]:
        """Finished traces with an answer, weighted by their confidence; `filtered`: only those at or above the
        threshold (the final vote, as the reference code counts it)."""
        out = []
        for c in self.candidates:
            if c.finish_reason is None or c.answer is None or c.index not in self.confidences:
                continue
            conf = self.confidences[c.index]
            if not filtered or self.threshold is None or conf >= self.threshold:
                out.append(replace(c, score=vote_weight(conf, metric)))
        return out

    def settled(self, metric: str, consensus: float) -> bool:
        """Does the leading answer class hold at least `consensus` of the vote weight of every finished trace
        (Algorithm 2's beta, over the warm-up's votes too: with only the few warm-up traces above a top-10%
        threshold, a single vote would always look unanimous)?"""
        voters = self.voters(metric, filtered=False)
        total = sum(c.score for c in voters)
        if not voters or total <= 0:
            return False
        classes = group_answers([c.answer for c in voters])
        weight: dict[int, float] = {}
        for cls, c in zip(classes, voters):
            weight[cls] = weight.get(cls, 0.0) + c.score
        return max(weight.values()) / total >= consensus


class DeepConfOnline(Strategy):
    """Online DeepConf; see the module docstring. After `solve`, `details[problem_id]` holds each problem's
    threshold, warm-up size and how many traces stopped early (also in `SolveResult.details`)."""

    name = "deepconf-online"
    params_class = DeepConfOnlineParams

    def __init__(self, engine: Engine, scorer: Scorer | None = None, *, params: DeepConfOnlineParams | None = None, sampling: SamplingParams = DEFAULT_SAMPLING, seed: int = 0) -> None:
        super().__init__(engine, scorer, params=params, sampling=sampling, seed=seed)
        self.sampling = with_logprobs(self.sampling, self.params.top_logprobs)
        self.details: dict[str, dict] = {}

    def solve_batch(self, problems: Problem | Sequence[Problem]) -> list[SolveResult]:
        probs = as_problem_list(problems)
        n = self.params.n
        self.details = {}
        return [r for group in in_groups(probs, max(1, self.params.max_rows // n)) for r in self._solve_group(group, n)]

    def _solve_group(self, problems: list[Problem], n: int) -> list[SolveResult]:
        t0 = time.perf_counter()
        e0 = self.engine.usage.copy()
        p = self.params
        warm = p.warmup_for(n)
        states = [_Problem(problem=q, candidates=[Candidate(index=j) for j in range(n)], confidences={}) for q in problems]
        requests = [Request(messages=q.chat()) for q in problems]
        params = [replace(self.sampling, n=warm, seed=problem_seed(self.seed, q.id)) for q in problems]

        # 1. Warm-up: every warm-up trace runs to its end.
        with problem_context([q.id for q in problems]):  # prefill errors name the problem, not "request i"
            batch = self.engine.start(requests, params)
        origin = [(i, j) for i in range(len(problems)) for j in range(warm)]  # row -> (problem, trace)
        batch.advance()
        for r, (i, j) in enumerate(origin):
            self._finish(states[i], batch.completion(r), j)
        for st in states:
            st.threshold = confidence_threshold([st.confidences[j] for j in range(warm)], p.keep)
            st.done = warm >= n or st.settled(p.metric, p.consensus)
        batch.reorder([])

        # 2. The remaining traces, watched by the threshold, with a consensus check every `check_every` tokens.
        todo = [i for i, st in enumerate(states) if not st.done]
        if todo:
            batch.add([requests[i] for i in todo], [replace(params[i], n=n - warm) for i in todo], first_index=warm)
            origin = [(i, j) for i in todo for j in range(warm, n)]
        else:
            origin = []
        while origin:
            stop = ConfidenceStop([states[i].threshold for i, _ in origin], window=p.window)
            steps = batch.advance(p.check_every, confidence_stop=stop)
            keep = []
            for r, ((i, j), step) in enumerate(zip(origin, steps)):
                st = states[i]
                if step.finished:
                    self._finish(st, batch.completion(r), j)
                elif step.reason == "confidence":
                    st.candidates[j] = self._partial(st.problem, batch.completion(r), j)
                    st.stopped_low += 1
                else:
                    keep.append(r)
            for st in states:
                if not st.done and st.settled(p.metric, p.consensus):
                    st.done = True
            still = []
            for r in keep:
                i, j = origin[r]
                if states[i].done:  # the vote is settled: this trace stops where it is
                    states[i].candidates[j] = self._partial(states[i].problem, batch.completion(r), j)
                    states[i].stopped_consensus += 1
                else:
                    still.append(r)
            origin = [origin[r] for r in still]
            batch.reorder(still)

        results = []
        for st in states:
            res = SolveResult(problem_id=st.problem.id, strategy=self.name, candidates=st.candidates)
            pick = weighted_vote(st.voters(p.metric))
            if pick is None:
                # No finished trace reached the threshold with an answer: fall back to the most confident
                # finished trace, as a single sample would have answered.
                finished = [replace(c, score=st.confidences[c.index]) for c in st.candidates if c.finish_reason is not None]
                best = best_of_n(finished)
                chosen = None if best is None else finished[best]
            else:
                chosen = st.voters(p.metric)[pick]
            if chosen is not None:
                res.selected, res.answer = chosen.index, chosen.answer
            res.details = {
                "threshold": st.threshold,
                "warmup": warm,
                "stopped_low_confidence": st.stopped_low,
                "stopped_by_consensus": st.stopped_consensus,
                "voters": len(st.voters(p.metric)),
            }
            self.details[st.problem.id] = res.details
            results.append(res)
        usages = split_usage(
            problems,
            self.engine.usage - e0,
            None,
            time.perf_counter() - t0,
            prompt_tokens=[sum(len(m["content"]) for m in q.chat()) for q in problems],  # shares of the prefill
            scored_chars=[0] * len(problems),
            generated=[sum(c.num_tokens for c in st.candidates) for st in states],
        )
        for res, u in zip(results, usages):
            res.usage = u
        return results

    def _finish(self, st: _Problem, completion, j: int) -> None:
        c = to_candidate(st.problem, completion, j)
        st.candidates[j] = c
        st.confidences[j] = candidate_confidence(c, self.params)

    def _partial(self, problem: Problem, completion, j: int) -> Candidate:
        c = to_candidate(problem, completion, j)
        c.finish_reason, c.answer = None, None  # stopped early: no answer, no vote
        return c
