"""DeepConf offline (Fu et al. 2025, "Deep Think with Confidence", section 3.1): sample n traces, keep the most
confident fraction by a confidence metric of their own logprobs, and vote over the kept answers weighted by
confidence. No reward model: the generator's token distributions are the signal.

`keep` is the paper's eta: 0.1 keeps the top 10% (DeepConf-low, the aggressive filter), 0.9 the top 90%
(DeepConf-high). The vote groups answers by mathematical equivalence (`testtime.grading.group_answers`), not
by string match as the reference code does, so `1/2` and `0.5` pool their weight.

Candidates are independent samples, so like majority voting, the result at a smaller budget is the same rule
over the first candidates (the eval prices n < N from one run at N).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import check
from ..engines import Engine, SamplingParams
from ..scorers import Scorer
from ._base import DEFAULT_SAMPLING, SamplingStrategy, check_n, with_logprobs
from ._confidence import ConfidenceParams, candidate_confidence, confidence_vote
from ._types import Candidate

__all__ = ["DeepConf", "DeepConfParams"]


@dataclass
class DeepConfParams(ConfidenceParams):
    """Knobs of offline DeepConf."""

    n: int = 16
    """Traces sampled per problem (the budget), >= 1."""
    keep: float = 0.1
    """Fraction of the answered traces kept for the vote, in (0, 1]: 0.1 is DeepConf-low, 0.9 DeepConf-high."""
    metric: str = "bottom10-group"
    """Confidence metric the traces are filtered and weighted by (offline, the paper's best were bottom-10%
    group and tail confidence)."""

    def __post_init__(self) -> None:
        check_n(self.n)
        check(isinstance(self.keep, (int, float)) and not isinstance(self.keep, bool) and 0 < self.keep <= 1, f"`keep` must be in (0, 1], got {self.keep!r}; it is the fraction of traces kept (0.1 DeepConf-low, 0.9 DeepConf-high).", parameter="keep", value=self.keep)
        self.check_confidence()


class DeepConf(SamplingStrategy):
    """Offline DeepConf; `select` is the filtered, confidence-weighted vote over any list of candidates."""

    name = "deepconf"
    params_class = DeepConfParams

    def __init__(self, engine: Engine, scorer: Scorer | None = None, *, params: DeepConfParams | None = None, sampling: SamplingParams = DEFAULT_SAMPLING, seed: int = 0) -> None:
        super().__init__(engine, scorer, params=params, sampling=sampling, seed=seed)
        self.sampling = with_logprobs(self.sampling, self.params.top_logprobs)

    def select(self, candidates: Sequence[Candidate]) -> int | None:
        confidences = [candidate_confidence(c, self.params) for c in candidates]
        return confidence_vote(candidates, confidences, keep=self.params.keep, metric=self.params.metric)[0]
