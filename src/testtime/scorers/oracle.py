"""The oracle verifier: 1.0 if a candidate's answer equals the gold answer, else 0.0.

It reads the gold answer, so it is for analysis only: pass@N, and an upper bound on what any reward model
could do for best-of-N. It never sees the question.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import ScorerError
from ..grading import extract_answer, is_equiv
from ._protocol import ScoreRequest, ScorerUsage, as_request_list

__all__ = ["OracleScorer"]


class OracleScorer:
    """Outcome scores from the gold answer (one-element lists)."""

    name = "oracle"

    def __init__(self) -> None:
        self.usage = ScorerUsage()

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]:
        reqs = as_request_list(requests)
        self.usage.num_calls += 1
        out = []
        for i, r in enumerate(reqs):
            if r.answer is None:
                raise ScorerError(f"the oracle scorer needs gold answers, but score request {i} has none; use another --scorer.")
            scores = []
            for text in r.candidates:
                pred = extract_answer(text, last_number=r.last_number_fallback)
                scores.append([1.0 if pred is not None and is_equiv(r.answer, pred) else 0.0])
            out.append(scores)
        return out
