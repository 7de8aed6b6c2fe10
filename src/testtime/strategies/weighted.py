"""Best-of-N, weighted: votes weighted by scorer score, summed per answer class (search-and-learn's
"weighted best-of-N"; Li et al. 2023). Combines self-consistency with the reward model's confidence."""

from __future__ import annotations

from collections.abc import Sequence

from ._base import SamplingStrategy
from ._select import weighted_vote
from ._types import Candidate

__all__ = ["WeightedBestOfN"]


class WeightedBestOfN(SamplingStrategy):
    name = "weighted"
    needs_scorer = True

    def select(self, candidates: Sequence[Candidate]) -> int | None:
        return weighted_vote(candidates)
