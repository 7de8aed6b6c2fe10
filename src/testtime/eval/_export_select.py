"""Which candidates of a problem become training records: the selection rules of `testtime export`."""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import DataError, ValidationError, check
from ._export_pool import PoolCandidate, ProblemPool

__all__ = ["ExportRules", "select_candidates", "preference_pairs"]


@dataclass
class ExportRules:
    """Selection rules, applied per problem in this order: correct only, chosen only, dedupe, top-k by reward,
    at most k. Dedupe runs before top-k so that copies of one text (the sampling strategies of one run share
    their candidates) cannot fill the k slots."""

    correct_only: bool = False
    """Keep candidates graded correct (needs gold answers)."""
    chosen_only: bool = False
    """Keep the candidate each strategy picked at its largest budget."""
    dedupe: bool = True
    """Keep one record per distinct text of a problem (the first, or the best-rewarded under `top_k`)."""
    top_k: int = 0
    """Keep the k highest-rewarded candidates (ties: the earlier one); needs a scored strategy. 0 disables."""
    max_per_problem: int = 0
    """At most this many records per problem (DPO: pairs), the first in order. 0: no limit."""

    def __post_init__(self) -> None:
        check(self.top_k >= 0, f"--top-k must be >= 0, got {self.top_k}.", parameter="top_k", value=self.top_k)
        check(self.max_per_problem >= 0, f"--max-per-problem must be >= 0, got {self.max_per_problem}.", parameter="max_per_problem", value=self.max_per_problem)


def _dedupe(cands: list[PoolCandidate]) -> list[PoolCandidate]:
    seen: set[str] = set()
    out = []
    for c in cands:
        if c.text not in seen:
            seen.add(c.text)
            out.append(c)
    return out


def _by_reward(cands: list[PoolCandidate], pool: ProblemPool, why: str) -> list[PoolCandidate]:
    """Highest reward first; `sorted` is stable, so ties keep pool order (lowest run, row, index)."""
    unscored = next((c for c in cands if c.reward is None), None)
    if unscored is not None:
        raise DataError(f"{why} needs rewards, but candidate {unscored.index} of problem {pool.problem.id!r} ({unscored.strategy} in {unscored.run}) has no score; export a run of a scored strategy (bon, weighted, beam, ...) or pass --strategy.")
    return sorted(cands, key=lambda c: -c.reward)


def _cap(items: list, k: int) -> list:
    return items[:k] if k else items


def select_candidates(pool: ProblemPool, rules: ExportRules) -> list[PoolCandidate]:
    """The candidates of one problem that pass `rules`, in output order."""
    cands = pool.candidates
    if rules.correct_only:
        ungraded = next((c for c in cands if c.correct is None), None)
        if ungraded is not None:
            raise DataError(f"--correct-only needs gold answers, but problem {pool.problem.id!r} has none; select by reward (--top-k) or the strategy's choice (--chosen) instead.")
        cands = [c for c in cands if c.correct]
    if rules.chosen_only:
        cands = [c for c in cands if c.is_chosen]
    if rules.top_k:
        # Sorted before dedupe, so the copy of a text that is kept is its best-rewarded one.
        cands = _by_reward(cands, pool, "--top-k")
    if rules.dedupe:
        cands = _dedupe(cands)
    if rules.top_k:
        cands = cands[: rules.top_k]
    return _cap(cands, rules.max_per_problem)


def preference_pairs(pool: ProblemPool, rules: ExportRules) -> list[tuple[PoolCandidate, PoolCandidate]]:
    """(chosen, rejected) pairs of one problem. With a gold answer: correct against incorrect, the i-th best of
    each (by reward when every candidate has one, else pool order), so the best correct answer meets the most
    convincing wrong one. Without: best against worst by reward, second best against second worst, ..., while
    the first reward is strictly higher (a tie says nothing about preference)."""
    if rules.correct_only or rules.chosen_only or rules.top_k:
        raise ValidationError("--format dpo pairs candidates itself (correct vs incorrect, else best vs worst by reward); --correct-only, --chosen and --top-k apply to sft and prm.", parameter="format")
    cands = _dedupe(pool.candidates) if rules.dedupe else list(pool.candidates)
    if pool.problem.answer is not None:
        if all(c.reward is not None for c in cands):
            cands = _by_reward(cands, pool, "pairing")
        good = [c for c in cands if c.correct]
        bad = [c for c in cands if not c.correct]
        pairs = list(zip(good, bad, strict=False))  # as many pairs as the shorter side has
    else:
        ranked = _by_reward(cands, pool, "--format dpo without gold answers")
        pairs = [(ranked[i], ranked[-1 - i]) for i in range(len(ranked) // 2) if ranked[i].reward > ranked[-1 - i].reward]
    return _cap(pairs, rules.max_per_problem)
