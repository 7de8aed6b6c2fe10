"""The scorer protocol: per-step scores for (question, candidates), and how to reduce them to one number.

A candidate is a solution text, complete or partial, whose steps are separated by a blank line (the math
prompts ask for that format). Process reward models return one score per step; outcome scorers (the oracle,
self-evaluation, ORMs) return a one-element list. Strategies rank candidates by a reduction of that list.

Optional capabilities are protocols checked with `isinstance`: `LogprobScorer` (reads the candidates' token
logprobs) and `HiddenStateScorer` (a head on the generator's hidden states, which can score live rows from the
states the decode loop already computed). A family built on the generator's own model declares
`needs_engine = True` on its class; `load_scorer` then hands it the engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from .._errors import ValidationError
from ..engines import TokenLogprobs

__all__ = ["HiddenStateScorer", "LogprobScorer", "ScoreRequest", "Scorer", "ScorerUsage", "Reduction", "REDUCTIONS", "reduce_scores", "split_steps", "STEP_SEPARATOR"]

STEP_SEPARATOR = "\n\n"

Reduction = Literal["last", "min", "prod", "mean"]
REDUCTIONS: tuple[str, ...] = ("last", "min", "prod", "mean")


@dataclass
class ScoreRequest:
    """Candidates for one question."""

    question: str = ""
    """The problem text, without system prompt or chat formatting (scorers apply their own format)."""
    candidates: list[str] = field(default_factory=list)
    """Solution texts, complete or partial; steps separated by `STEP_SEPARATOR`."""
    answer: str | None = None
    """Gold answer; only the oracle reads it."""
    last_number_fallback: bool = False
    """Whether an unmarked final number counts as the candidate's answer (arith, gsm8k)."""
    messages: list[dict[str, str]] | None = None
    """The chat prompt the generator answered (system, few-shot, question). Scorers built on the generator's
    own hidden states read it to see exactly what the generator saw; other scorers use `question`."""
    logprobs: list[TokenLogprobs | None] | None = None
    """Per candidate, the generator's per-token logprobs (when the engine returned them). Confidence scorers
    read only these; other scorers ignore them."""


@dataclass
class ScorerUsage:
    """Running counters a scorer keeps; strategies diff snapshots to account for their compute."""

    num_tokens: int = 0
    """Tokens pushed through the reward model."""
    num_calls: int = 0
    """`score` calls."""
    num_prefix_tokens: int = 0
    """Of `num_tokens`, those read once per request however many candidates it has (a shared prompt): the
    share of a request's scoring that does not shrink with fewer candidates."""

    def copy(self) -> ScorerUsage:
        return ScorerUsage(**vars(self))

    def __sub__(self, other: ScorerUsage) -> ScorerUsage:
        return ScorerUsage(**{k: v - getattr(other, k) for k, v in vars(self).items()})


@runtime_checkable
class Scorer(Protocol):
    usage: ScorerUsage

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]:
        """Per request, per candidate, the list of step scores (in [0, 1], higher is better). Input order."""
        ...


@runtime_checkable
class LogprobScorer(Protocol):
    """A scorer that reads the candidates' per-token logprobs (the confidence family): strategies ask the
    engine for `num_logprobs` top logprobs per token and pass them in `ScoreRequest.logprobs`."""

    num_logprobs: int

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]: ...


@runtime_checkable
class HiddenStateScorer(Protocol):
    """A scorer that is a head on one generator's hidden states (the built-in PRM head): given the states of
    `hidden_layers` at a row's last visible token, `score_hidden` returns the row's score, so a live batch that
    keeps those states (`engines.HiddenStateBatch`) is scored with no token pushed through any model again.
    Only valid for rows of `engine`, the generator whose states the head was trained on."""

    engine: Any
    """The generator the head reads."""
    hidden_layers: list[int]
    """Layers read (transformers' numbering: 0 embeddings, -1 the final norm), concatenated in this order."""

    def score_hidden(self, features: Any) -> list[float]:
        """One score per row of (N, C x len(hidden_layers)) features."""
        ...

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]: ...


def as_request_list(requests: ScoreRequest | Sequence[ScoreRequest]) -> list[ScoreRequest]:
    reqs = [requests] if isinstance(requests, ScoreRequest) else list(requests)
    for i, r in enumerate(reqs):
        if not isinstance(r, ScoreRequest):
            raise ValidationError(f"score request {i} is a {type(r).__name__}, expected ScoreRequest.", parameter="requests")
    return reqs


def split_steps(text: str, separator: str = STEP_SEPARATOR) -> list[str]:
    """Steps of a solution. A trailing separator ends the last step; it does not start an empty one, so a
    partial solution is never scored on an empty step (the reference toolkit ranks beams by such scores)."""
    steps = text.split(separator)
    while steps and not steps[-1].strip():
        steps.pop()
    return steps


def reduce_scores(scores: Sequence[float], how: str = "last") -> float:
    """One number from per-step scores: the last step's (default), the minimum, the product or the mean.
    A candidate with no scored step gets 0.0, the lowest score, so it never wins a ranking."""
    if how not in REDUCTIONS:
        raise ValidationError(f"`reduction` must be one of {', '.join(REDUCTIONS)}, got {how!r}.", parameter="reduction", value=how)
    if not scores:
        return 0.0
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    if how == "prod":
        return float(math.prod(scores))
    return float(sum(scores) / len(scores))
