"""Best-of-N, naive: the single candidate the scorer rates highest (Cobbe et al. 2021; search-and-learn)."""

from __future__ import annotations

from collections.abc import Sequence

from ._base import SamplingStrategy
from ._select import best_of_n
from ._types import Candidate

__all__ = ["BestOfN"]


class BestOfN(SamplingStrategy):
    name = "bon"
    needs_scorer = True

    def select(self, candidates: Sequence[Candidate]) -> int | None:
        return best_of_n(candidates)
