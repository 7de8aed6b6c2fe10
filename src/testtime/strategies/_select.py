"""Selection rules over a list of candidates: the whole difference between majority vote, best-of-N and
weighted best-of-N. Pure functions, so the eval can apply them to the first n of N candidates.

Ties break towards the lowest index (for classes: the class whose first member comes first), never by dict
order, so the same candidates always give the same choice.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import ValidationError
from ..grading import group_answers
from ._types import Candidate

__all__ = ["majority_vote", "best_of_n", "weighted_vote"]


def _class_totals(candidates: Sequence[Candidate], weights: Sequence[float]) -> tuple[list[int | None], dict[int, float]]:
    classes = group_answers([c.answer for c in candidates])
    totals: dict[int, float] = {}
    for cls, w in zip(classes, weights):
        if cls is not None:
            totals[cls] = totals.get(cls, 0.0) + w
    return classes, totals


def _winner(totals: dict[int, float]) -> int | None:
    # Highest total; among equal totals the class whose first member has the lowest index.
    return min(totals, key=lambda c: (-totals[c], c)) if totals else None


def majority_vote(candidates: Sequence[Candidate]) -> int | None:
    """Index of the first member of the most frequent answer class (Wang et al. 2023, self-consistency)."""
    _, totals = _class_totals(candidates, [1.0] * len(candidates))
    return _winner(totals)


def best_of_n(candidates: Sequence[Candidate]) -> int | None:
    """Index of the highest-scoring candidate (naive best-of-N), by `Candidate.score`."""
    if not candidates:
        return None
    return min(range(len(candidates)), key=lambda i: (-(candidates[i].score or 0.0), i))


def weighted_vote(candidates: Sequence[Candidate]) -> int | None:
    """Weighted best-of-N (Li et al. 2023; search-and-learn): the answer class with the largest sum of scores;
    returns its highest-scoring member. Scores are vote weights, so they must be >= 0 (a sum of negative
    log-probabilities would favour the smaller class)."""
    negative = next((c.score for c in candidates if (c.score or 0.0) < 0), None)
    if negative is not None:
        raise ValidationError(
            f"a weighted vote needs scores >= 0 as weights, got {negative}; rank by it with best-of-N instead, or use a scorer whose scores are weights (confidence:logprob is a log-probability).",
            parameter="scorer",
            value=negative,
        )
    classes, totals = _class_totals(candidates, [c.score or 0.0 for c in candidates])
    win = _winner(totals)
    if win is None:
        return None
    members = [i for i, c in enumerate(classes) if c == win]
    return min(members, key=lambda i: (-(candidates[i].score or 0.0), i))
