"""Confidence of candidates from their own logprobs, and DeepConf's filtered, confidence-weighted vote.

Shared by `deepconf` (offline: filter and vote over n finished traces) and `deepconf-online` (the same vote
over the traces that survived early stopping).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .._errors import ValidationError, check
from ..engines import DEFAULT_CONFIDENCE_WINDOW
from ..scorers import CONFIDENCE_METRICS, ConfidenceTrace, confidence_metric
from ..scorers.confidence import DEFAULT_TAIL, DEFAULT_TOP_LOGPROBS
from ._select import weighted_vote
from ._types import Candidate

__all__ = ["ConfidenceParams", "candidate_confidence", "confidence_threshold", "confidence_vote", "vote_weight"]


@dataclass
class ConfidenceParams:
    """How a trace's confidence is measured (the knobs DeepConf's strategies share)."""

    metric: str = "lowest-group"
    """A confidence metric (`testtime.scorers.CONFIDENCE_METRICS`). DeepConf online stops traces on their group
    confidence and scores them by the lowest one; offline, `bottom10-group` and `tail` did best in the paper."""
    window: int = DEFAULT_CONFIDENCE_WINDOW
    """Tokens per group (sliding window), >= 1."""
    tail: int = DEFAULT_TAIL
    """Tokens of the `tail` metric, >= 1."""
    top_logprobs: int = DEFAULT_TOP_LOGPROBS
    """k of the token confidence (-mean of the top-k logprobs), in [1, 20]."""

    def check_confidence(self) -> None:
        check(self.metric in CONFIDENCE_METRICS, f"`metric` must be one of {', '.join(CONFIDENCE_METRICS)}, got {self.metric!r}.", parameter="metric", value=self.metric)
        for name in ("window", "tail"):
            v = getattr(self, name)
            check(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f"`{name}` must be an integer >= 1, got {v!r}.", parameter=name, value=v)
        k = self.top_logprobs
        check(isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 20, f"`top_logprobs` must be an integer in [1, 20], got {k!r}.", parameter="top_logprobs", value=k)


def candidate_confidence(c: Candidate, params: ConfidenceParams) -> float:
    """The candidate's confidence under `params` (from its logprobs; partial candidates too)."""
    if c.logprobs is None:
        raise ValidationError(f"candidate {c.index} has no logprobs; DeepConf asks the engine for them (SamplingParams.logprobs), so this engine did not return them.", parameter="logprobs")
    return confidence_metric(ConfidenceTrace.from_logprobs(c.logprobs), params.metric, window=params.window, tail=params.tail)


def vote_weight(confidence: float, metric: str) -> float:
    """A vote's weight: the confidence itself (DeepConf), or, for the mean logprob (<= 0), the geometric-mean
    token probability exp(logprob), which orders votes the same way and is >= 0."""
    return math.exp(confidence) if metric == "logprob" else confidence


def confidence_threshold(confidences: Sequence[float], keep: float) -> float:
    """The confidence at which the top `keep` fraction starts: numpy's linearly interpolated
    (100 - 100 keep)-th percentile, as the DeepConf reference code computes it (keep 0.1: the 90th)."""
    return float(np.percentile(np.asarray(confidences, dtype=float), 100.0 * (1.0 - keep)))


def confidence_vote(candidates: Sequence[Candidate], confidences: Sequence[float], *, keep: float, metric: str) -> tuple[int | None, float | None]:
    """DeepConf's offline rule (Fu et al. 2025, section 3.1): among candidates with an answer, keep those whose
    confidence is at least the top-`keep` threshold, and vote over answer classes (math equivalence, not string
    match) with the confidences as weights. Returns (index of the winning class's most confident member,
    threshold); (None, None) when no candidate has an answer."""
    valid = [i for i, c in enumerate(candidates) if c.answer is not None]
    if not valid:
        return None, None
    threshold = confidence_threshold([confidences[i] for i in valid], keep)
    kept = [i for i in valid if confidences[i] >= threshold]
    voters = [replace(candidates[i], score=vote_weight(confidences[i], metric)) for i in kept]
    pick = weighted_vote(voters)
    return (None if pick is None else kept[pick]), threshold
