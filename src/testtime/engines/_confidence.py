"""Token confidence, and the live batch's rule for pausing rows whose confidence drops (DeepConf online).

DeepConf (Fu et al. 2025, "Deep Think with Confidence", eq. 2) calls the negative mean of the top-k logprobs
at a position the *token confidence*: a peaked next-token distribution (the model is sure) has one logprob near
0 and the others very negative, so the mean is very negative and the confidence high. The *group confidence*
is its mean over a sliding window of tokens (eq. 3). Online DeepConf stops a trace the moment its current
window's group confidence falls below a threshold learned on warm-up traces (section 3.2); the reference
implementation patches vLLM's sampler to do it, here it is an `advance` option of every live batch.

One difference from the reference code, on purpose: vLLM's logprobs dict holds the sampled token too when it
is not among the top k, and the reference averages over that dict (k or k + 1 entries). We average over the
top k only, so a token's confidence does not depend on which token was drawn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from .._errors import check

__all__ = ["DEFAULT_CONFIDENCE_WINDOW", "ConfidenceStop", "WindowMean", "token_confidence"]

DEFAULT_CONFIDENCE_WINDOW = 16
"""Tokens in a group (sliding window). DeepConf uses 2048 for reasoning traces of 10k+ tokens; the answers of
a small instruct model are 40-400 tokens, and 16 leaves several windows even in the shortest ones (see
BENCHMARKS.md, "Confidence signals", for the window sweep)."""


def token_confidence(top_logprobs: Sequence[float]) -> float:
    """DeepConf's token confidence: -mean of the top-k logprobs at one position (0.0 when k = 0)."""
    return -sum(top_logprobs) / len(top_logprobs) if top_logprobs else 0.0


@dataclass
class ConfidenceStop:
    """Pause a live-batch row when its group confidence falls below its threshold (DeepConf online).

    After every generated token, a row with at least `window` tokens in its completion (tokens of earlier
    advances count) compares the mean token confidence of its last `window` tokens with `thresholds[row]`;
    below it, the row pauses with reason "confidence" and can be dropped with `reorder`. Rows need top
    logprobs (`SamplingParams.logprobs >= 1`)."""

    thresholds: Sequence[float | None] = field(default_factory=list)
    """Per row of the batch, in row order; None leaves that row unchecked."""
    window: int = DEFAULT_CONFIDENCE_WINDOW
    """Tokens in the sliding window, >= 1."""

    def __post_init__(self) -> None:
        self.thresholds = list(self.thresholds)
        check(isinstance(self.window, int) and not isinstance(self.window, bool) and self.window >= 1, f"`window` must be an integer >= 1, got {self.window!r}.", parameter="window", value=self.window)


class WindowMean:
    """Running mean of the last `size` values pushed (O(1) per push)."""

    def __init__(self, size: int, values: Sequence[float] = ()) -> None:
        self.size = size
        self.values: deque[float] = deque(maxlen=size)
        self.total = 0.0
        for v in values[-size:] if size else ():
            self.push(v)

    def push(self, value: float) -> None:
        if len(self.values) == self.size:
            self.total -= self.values[0]
        self.values.append(value)
        self.total += value

    @property
    def full(self) -> bool:
        return len(self.values) == self.size

    @property
    def mean(self) -> float:
        return self.total / len(self.values) if self.values else 0.0
