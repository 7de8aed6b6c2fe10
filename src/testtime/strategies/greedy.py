"""Greedy decoding: one chain of thought at temperature 0, the baseline every scaling curve starts from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .._errors import check
from ._base import DEFAULT_SAMPLING, SamplingStrategy, SamplingStrategyParams
from ._types import Candidate

__all__ = ["Greedy", "GreedyParams"]


@dataclass
class GreedyParams(SamplingStrategyParams):
    """Greedy's params: its budget is always one candidate."""

    n: int = 1
    """Candidates: 1, the only value (more greedy samples would all be the same)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.n == 1, f"greedy decodes one candidate (more would all be the same): `n` must be 1, got {self.n!r}.", parameter="n", value=self.n)


class Greedy(SamplingStrategy):
    name = "greedy"
    params_class = GreedyParams
    fixed_budget = 1

    def __init__(self, engine, scorer=None, *, params: GreedyParams | None = None, sampling=DEFAULT_SAMPLING, seed: int = 0) -> None:
        super().__init__(engine, scorer, params=params, sampling=replace(sampling, temperature=0.0), seed=seed)

    def select(self, candidates: Sequence[Candidate]) -> int | None:
        return 0 if candidates else None
