"""Majority voting (self-consistency, Wang et al. 2023): the most frequent final answer among n samples."""

from __future__ import annotations

from collections.abc import Sequence

from ._base import SamplingStrategy
from ._select import majority_vote
from ._types import Candidate

__all__ = ["MajorityVote"]


class MajorityVote(SamplingStrategy):
    name = "majority"

    def select(self, candidates: Sequence[Candidate]) -> int | None:
        return majority_vote(candidates)
