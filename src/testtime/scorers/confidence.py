"""Confidence scorers: rewards computed from the generator's own per-token logprobs, with no model call.

`--scorer confidence:METRIC` ranks candidates by how sure the generator was while writing them. The metrics
(higher is always more confident):

- `logprob`: mean log-probability of the sampled tokens, the generator's likelihood of its answer
  (Speculative Rejection's section 5.3 reward; perplexity = exp(-logprob)).
- `mean`: DeepConf's average trace confidence, the mean over tokens of the token confidence
  C_t = -mean of the top-k logprobs at t (Fu et al. 2025, eq. 2).
- `group`: the group confidence of the last `window` tokens (eq. 3): what online DeepConf watches.
- `lowest-group`: the lowest group confidence over all sliding windows (online DeepConf's trace score).
- `bottom10-group`: the mean of the lowest 10% of the sliding windows' group confidences.
- `tail`: mean token confidence over the last `tail` tokens.
- `self-certainty`: mean over tokens of KL(uniform || p_t) (Kang et al. 2025): exact where the engine saw the
  whole distribution (in-process), else the top-k approximation, the KL of the renormalized top-k
  distribution from uniform over k.

Windows follow the reference code: a trace shorter than the window is one group (its mean). A partial answer
is scored like a finished one, from the logprobs it has so far, so a decision point mid-generation costs
nothing. Scores are not in [0, 1]: `logprob` is <= 0, the others >= 0. Rankings (best-of-N, Speculative
Rejection, DeepConf's filter) use only the order; weighted votes need non-negative weights, so they refuse
`logprob` (DeepConf weights by the other metrics, as the paper does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .._errors import ScorerError, ValidationError, check
from ..engines import DEFAULT_CONFIDENCE_WINDOW, TokenLogprobs, token_confidence
from ._protocol import ScoreRequest, ScorerUsage, as_request_list

__all__ = [
    "CONFIDENCE_METRICS",
    "DEFAULT_TAIL",
    "DEFAULT_TOP_LOGPROBS",
    "ConfidenceScorer",
    "ConfidenceTrace",
    "confidence_metric",
]

CONFIDENCE_METRICS = ("logprob", "mean", "group", "lowest-group", "bottom10-group", "tail", "self-certainty")
DEFAULT_TAIL = 32
"""Tokens in `tail` (DeepConf: 2048 of traces of 10k+ tokens). The last 32 tokens of a math answer are its
final step and the stated answer."""
DEFAULT_TOP_LOGPROBS = 5
"""k of the token confidence (-mean of the top-k logprobs). DeepConf uses 20; on the embedded model k = 5 and
k = 20 separate right from wrong answers alike (BENCHMARKS.md, "Confidence signals"), and 5 costs less to
store and to ask a server for."""
BOTTOM_FRACTION = 0.1


@dataclass
class ConfidenceTrace:
    """The per-token numbers every metric is computed from (what `results.jsonl` stores per candidate)."""

    logprob: list[float]
    """The sampled token's logprob."""
    confidence: list[float]
    """DeepConf's token confidence, -mean of the top-k logprobs (empty when the engine returned no top-k)."""
    certainty: list[float]
    """Per-token self-certainty: exact KL(uniform || p) or its top-k approximation (empty without top-k)."""

    @classmethod
    def from_logprobs(cls, lp: TokenLogprobs) -> ConfidenceTrace:
        has_top = bool(lp.top_logprobs) and all(lp.top_logprobs)
        if lp.kl_from_uniform is not None and len(lp.kl_from_uniform) == len(lp.logprobs):
            certainty = list(lp.kl_from_uniform)
        elif has_top:
            certainty = [_topk_certainty(t) for t in lp.top_logprobs]
        else:
            certainty = []
        return cls(logprob=list(lp.logprobs), confidence=[token_confidence(t) for t in lp.top_logprobs] if has_top else [], certainty=certainty)

    def to_dict(self, digits: int = 6) -> dict:
        # 6 digits: with 4, a replayed DeepConf@64 chose differently from the live strategy on 2 of 100 arith
        # problems, where two traces' mean confidences differed by ~1e-5 at the keep cut (BENCHMARKS.md).
        return {k: [round(x, digits) for x in getattr(self, k)] for k in ("logprob", "confidence", "certainty")}

    @classmethod
    def from_dict(cls, data: dict) -> ConfidenceTrace:
        return cls(logprob=list(data.get("logprob", [])), confidence=list(data.get("confidence", [])), certainty=list(data.get("certainty", [])))


def _topk_certainty(top: Sequence[float]) -> float:
    """KL(uniform over k || renormalized top-k) = -log k - mean_j log(p_j / sum_i p_i)."""
    m = max(top)
    log_total = m + math.log(sum(math.exp(x - m) for x in top))
    return -math.log(len(top)) - sum(top) / len(top) + log_total


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _window_means(xs: Sequence[float], window: int) -> list[float]:
    """Mean of every full sliding window; a sequence shorter than the window is one group (DeepConf's rule)."""
    if len(xs) <= window:
        return [_mean(xs)]
    total = sum(xs[:window])
    out = [total / window]
    for i in range(window, len(xs)):
        total += xs[i] - xs[i - window]
        out.append(total / window)
    return out


def confidence_metric(trace: ConfidenceTrace, metric: str, *, window: int = DEFAULT_CONFIDENCE_WINDOW, tail: int = DEFAULT_TAIL) -> float:
    """One number from a trace, higher = more confident; 0.0 for an empty trace (nothing generated yet)."""
    if metric == "logprob":
        return _mean(trace.logprob)
    if metric == "self-certainty":
        return _mean(trace.certainty)
    c = trace.confidence
    if metric == "mean":
        return _mean(c)
    if metric == "group":
        return _mean(c[-window:])
    if metric == "tail":
        return _mean(c[-tail:])
    means = _window_means(c, window)
    if metric == "lowest-group":
        return min(means)
    if metric == "bottom10-group":
        k = max(1, int(len(means) * BOTTOM_FRACTION))
        return _mean(sorted(means)[:k])
    raise ValidationError(f"confidence metric must be one of {', '.join(CONFIDENCE_METRICS)}, got {metric!r}.", parameter="metric", value=metric)


class ConfidenceScorer:
    """A scorer whose reward is a confidence metric of the candidate's own logprobs (no model call).

    Strategies see `num_logprobs` and ask the engine for that many top logprobs per token; the scores come
    from `ScoreRequest.logprobs`. One score per candidate (an outcome score), partial candidates included.

    Args:
        metric: One of CONFIDENCE_METRICS.
        window: Tokens per group for `group`, `lowest-group`, `bottom10-group`.
        tail: Tokens of `tail`.
        top_logprobs: k of the token confidence (`logprob` needs none: the sampled token's logprob suffices).
    """

    is_nonnegative: bool

    def __init__(self, metric: str = "mean", *, window: int = DEFAULT_CONFIDENCE_WINDOW, tail: int = DEFAULT_TAIL, top_logprobs: int = DEFAULT_TOP_LOGPROBS) -> None:
        if metric not in CONFIDENCE_METRICS:
            raise ValidationError(f"confidence metric must be one of {', '.join(CONFIDENCE_METRICS)}, got {metric!r} (use --scorer confidence:METRIC).", parameter="metric", value=metric)
        for name, value in (("window", window), ("tail", tail)):
            check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, f"`{name}` must be an integer >= 1, got {value!r}.", parameter=name, value=value)
        check(isinstance(top_logprobs, int) and not isinstance(top_logprobs, bool) and 1 <= top_logprobs <= 20, f"`top_logprobs` must be an integer in [1, 20], got {top_logprobs!r}.", parameter="top_logprobs", value=top_logprobs)
        self.metric, self.window, self.tail = metric, window, tail
        self.num_logprobs = 0 if metric == "logprob" else top_logprobs
        self.is_nonnegative = metric != "logprob"
        self.usage = ScorerUsage()

    def __repr__(self) -> str:
        return f"ConfidenceScorer({self.metric!r}, window={self.window}, tail={self.tail}, top_logprobs={self.num_logprobs})"

    def score_trace(self, trace: ConfidenceTrace) -> float:
        needs = {"logprob": "logprob", "self-certainty": "certainty"}.get(self.metric, "confidence")
        if trace.logprob and not getattr(trace, needs):
            raise ScorerError(f"confidence:{self.metric} needs the top {self.num_logprobs} logprobs of every token, and the engine returned only the sampled token's.")
        return confidence_metric(trace, self.metric, window=self.window, tail=self.tail)

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]:
        reqs = as_request_list(requests)
        self.usage.num_calls += 1
        out = []
        for i, req in enumerate(reqs):
            lps = req.logprobs
            if lps is None or len(lps) != len(req.candidates) or any(lp is None for lp in lps):
                raise ScorerError(
                    f"confidence:{self.metric} reads each candidate's per-token logprobs, and score request {i} has none; "
                    "the strategy asks the engine for them (SamplingParams.logprobs), so pass them in ScoreRequest.logprobs."
                )
            out.append([[self.score_trace(ConfidenceTrace.from_logprobs(lp))] for lp in lps])
        return out
