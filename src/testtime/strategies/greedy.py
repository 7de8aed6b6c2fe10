"""Greedy decoding: one chain of thought at temperature 0, the baseline every scaling curve starts from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ._base import DEFAULT_SAMPLING, SamplingStrategy
from ._types import Candidate

__all__ = ["Greedy"]


class Greedy(SamplingStrategy):
    name = "greedy"
    fixed_budget = 1

    def __init__(self, engine, scorer=None, *, params=None, sampling=DEFAULT_SAMPLING, seed: int = 0) -> None:
        super().__init__(engine, scorer, params=params, sampling=replace(sampling, temperature=0.0), seed=seed)

    def select(self, candidates: Sequence[Candidate]) -> int | None:
        return 0 if candidates else None

    def solve_batch(self, problems, budget: int | None = None):
        return super().solve_batch(problems, 1)  # more greedy samples would all be the same
