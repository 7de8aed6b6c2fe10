"""Adaptive self-consistency (Aggarwal et al. 2023, "Let's Sample Step by Step: Adaptive-Consistency for
Efficient Reasoning"): sample in waves and stop as soon as the leading answer is settled, up to the budget n.

After each wave of `wave` samples, a stopping rule looks at the answer counts:
- "beta" (the paper's default): with a uniform prior, the share p of the leading answer among the two most
  frequent has posterior Beta(a + 1, b + 1) given their counts a and b; stop when P(p > 1/2) >= `threshold`.
  For integer counts that probability is exact: P(Binomial(a + b + 1, 1/2) <= a). Four agreeing votes give
  31/32 = 0.97 (stop at 0.95), three give 15/16 = 0.94 (go on).
- "dirichlet": the answer shares have posterior Dirichlet(counts + 1) over the answers seen; stop when the
  leading answer's share is the largest with probability >= `threshold` (Monte Carlo, a seeded generator so
  the same counts always give the same decision).
The answer is the majority vote over every sample drawn. Samples with no answer count for no class.

With the same seed, sample j is the `majority` strategy's candidate j (waves are added to the live batch as
completions k, k + 1, ... of the same request), so tokens saved at equal accuracy against majority@n are
measured on the same samples (up to the floating-point differences of another batch shape, which can flip a
sampled token now and then).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .._errors import check
from ..engines import Engine, Request, SamplingParams
from ..grading import group_answers
from ..scorers import Scorer
from ..tasks import Problem
from ._base import (
    DEFAULT_SAMPLING,
    Strategy,
    as_problem_list,
    in_groups,
    problem_seed,
    split_usage,
    to_candidate,
)
from ._select import majority_vote
from ._types import Candidate, SolveResult

__all__ = ["AdaptiveConsistency", "AdaptiveParams", "STOPPING_RULES", "beta_stop_probability", "dirichlet_stop_probability", "stop_probability"]

STOPPING_RULES = ("beta", "dirichlet")
DIRICHLET_DRAWS = 4000
DEFAULT_MAX_ROWS = 256


@dataclass
class AdaptiveParams:
    """Knobs of adaptive self-consistency."""

    n: int = 16
    """Most samples per problem (the budget), >= 1."""
    wave: int = 4
    """Samples added per problem between checks, >= 1. Smaller waves stop sooner and batch fewer rows; with
    the beta rule nothing can stop before four agreeing votes, so 4 loses little."""
    rule: str = "beta"
    """Stopping rule: "beta" or "dirichlet" (see the module docstring)."""
    threshold: float = 0.95
    """Stop when the rule's probability that the leading answer is the true majority reaches this, in (0, 1)."""
    max_rows: int = DEFAULT_MAX_ROWS
    """Problems run in groups of max(1, max_rows // wave) (one wave each in the batch at a time)."""

    def __post_init__(self) -> None:
        for name in ("n", "wave", "max_rows"):
            v = getattr(self, name)
            check(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"`{name}` must be an integer >= 1, got {v!r}.", parameter=name, value=v)
        check(self.rule in STOPPING_RULES, f"`rule` must be one of {', '.join(STOPPING_RULES)}, got {self.rule!r}.", parameter="rule", value=self.rule)
        check(isinstance(self.threshold, (int, float)) and not isinstance(self.threshold, bool) and 0 < self.threshold < 1, f"`threshold` must be in (0, 1), got {self.threshold!r}.", parameter="threshold", value=self.threshold)


def _class_counts(answers: Sequence[str | None]) -> list[int]:
    """Sizes of the answer classes (math equivalence), largest first; unanswered samples count for none."""
    classes = group_answers(list(answers))
    counts: dict[int, int] = {}
    for c in classes:
        if c is not None:
            counts[c] = counts.get(c, 0) + 1
    return sorted(counts.values(), reverse=True)


def beta_stop_probability(counts: Sequence[int]) -> float:
    """P(p > 1/2) for p ~ Beta(a + 1, b + 1), a and b the two largest counts: P(Binomial(a + b + 1, 1/2) <= a)."""
    if not counts:
        return 0.0
    a, b = counts[0], (counts[1] if len(counts) > 1 else 0)
    m = a + b + 1
    return sum(math.comb(m, k) for k in range(a + 1)) / 2**m


def dirichlet_stop_probability(counts: Sequence[int], *, draws: int = DIRICHLET_DRAWS, seed: int = 0) -> float:
    """P(the leading answer's share is the largest) for shares ~ Dirichlet(counts + 1), by Monte Carlo."""
    if not counts:
        return 0.0
    if len(counts) == 1:
        return beta_stop_probability(counts)  # one answer seen: against the best unseen alternative (count 0)
    shares = np.random.default_rng(seed).dirichlet(np.asarray(counts, dtype=float) + 1.0, size=draws)
    return float(np.mean(shares.argmax(1) == 0))


def stop_probability(candidates: Sequence[Candidate], rule: str) -> float:
    """The stopping rule's probability that the leading answer among `candidates` is the true majority."""
    counts = _class_counts([c.answer for c in candidates])
    if rule == "beta":
        return beta_stop_probability(counts)
    return dirichlet_stop_probability(counts, seed=sum(counts))


class AdaptiveConsistency(Strategy):
    """Adaptive self-consistency; see the module docstring. `SolveResult.details` says how many samples were
    drawn and the stopping probability at the end."""

    name = "adaptive"
    params_class = AdaptiveParams

    def __init__(self, engine: Engine, scorer: Scorer | None = None, *, params: AdaptiveParams | None = None, sampling: SamplingParams = DEFAULT_SAMPLING, seed: int = 0) -> None:
        super().__init__(engine, scorer, params=params, sampling=sampling, seed=seed)

    def stop_probability(self, candidates: Sequence[Candidate]) -> float:
        return stop_probability(candidates, self.params.rule)

    def solve_batch(self, problems: Problem | Sequence[Problem]) -> list[SolveResult]:
        probs = as_problem_list(problems)
        n = self.params.n
        return [r for group in in_groups(probs, max(1, self.params.max_rows // min(self.params.wave, n))) for r in self._solve_group(group, n)]

    def _solve_group(self, problems: list[Problem], n: int) -> list[SolveResult]:
        t0 = time.perf_counter()
        e0 = self.engine.usage.copy()
        requests = [Request(messages=q.chat()) for q in problems]
        params = [replace(self.sampling, seed=problem_seed(self.seed, q.id)) for q in problems]
        cands: list[list[Candidate]] = [[] for _ in problems]
        probability = [0.0] * len(problems)
        todo = list(range(len(problems)))
        batch = self.engine.start()
        while todo:
            # Problems still going have all had every wave, so they hold the same number of samples; the next
            # wave continues their indices, so sample j is majority's candidate j.
            done = len(cands[todo[0]])
            size = min(self.params.wave, n - done)
            batch.add([requests[i] for i in todo], [replace(params[i], n=size) for i in todo], first_index=done)
            origin = [i for i in todo for _ in range(size)]
            batch.advance()
            for r, i in enumerate(origin):
                cands[i].append(to_candidate(problems[i], batch.completion(r), len(cands[i])))
            batch.reorder([])
            nxt = []
            for i in todo:
                probability[i] = self.stop_probability(cands[i])
                if probability[i] < self.params.threshold and len(cands[i]) < n:
                    nxt.append(i)
            todo = nxt
        results = []
        for q, cs, prob in zip(problems, cands, probability):
            sel = majority_vote(cs)
            res = SolveResult(problem_id=q.id, strategy=self.name, candidates=cs, selected=sel, answer=None if sel is None else cs[sel].answer)
            res.details = {"samples": len(cs), "stop_probability": prob}
            results.append(res)
        usages = split_usage(
            problems,
            self.engine.usage - e0,
            None,
            time.perf_counter() - t0,
            prompt_tokens=[sum(len(m["content"]) for m in q.chat()) for q in problems],
            scored_chars=[0] * len(problems),
            generated=[sum(c.num_tokens for c in cs) for cs in cands],
        )
        for res, u in zip(results, usages):
            res.usage = u
        return results
