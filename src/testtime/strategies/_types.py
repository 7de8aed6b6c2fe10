"""What every strategy returns: per problem, all candidates with scores and token counts, the chosen one, and
what it cost. Mirrors vLLM's `RequestOutput` / `CompletionOutput`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

from ..engines import TokenLogprobs

__all__ = ["Candidate", "Usage", "SolveResult"]


@dataclass
class Candidate:
    """One solution a strategy produced."""

    index: int = 0
    """Position among the problem's candidates (generation order)."""
    text: str = ""
    """The solution text the generator wrote."""
    num_tokens: int = 0
    """Generated tokens in `text`."""
    finish_reason: str | None = None
    """"stop", "eos" or "length" (see `testtime.engines.FinishReason`); None if the search abandoned it."""
    cumulative_logprob: float | None = None
    """Sum of its tokens' log-probabilities under the generator, when the engine reports them."""
    answer: str | None = None
    """Final answer extracted from `text` (None if there is none)."""
    scores: list[float] = field(default_factory=list)
    """Per-step scores from the strategy's scorer (empty when it uses none)."""
    score: float | None = None
    """The reduced score the strategy ranked it by (None when it ranks by votes only)."""
    logprobs: TokenLogprobs | None = None
    """Per-token log-probabilities, when the strategy asked the engine for them (confidence scorers, DeepConf,
    `logprobs` on `testtime serve`)."""


@dataclass
class Usage:
    """Compute one problem consumed. Engine/scorer calls shared by a batch count for every problem in it;
    shared prefill, scoring and wall time are split across the batch's problems."""

    num_prefill_tokens: int = 0
    num_generated_tokens: int = 0
    num_scored_tokens: int = 0
    num_engine_calls: int = 0
    num_scorer_calls: int = 0
    wall_time: float = 0.0
    num_scored_prefix_tokens: int = 0
    """Of `num_scored_tokens`, the problem's prompt the scorer read once for all its candidates."""
    num_cached_prompt_tokens: int = 0
    """Prompt tokens the engine read from its prefix cache instead of computing (not in `num_prefill_tokens`)."""

    @property
    def num_compute_tokens(self) -> int:
        """Generated plus scorer-processed tokens: the compute measure the eval reports."""
        return self.num_generated_tokens + self.num_scored_tokens

    @classmethod
    def from_dict(cls, data: dict) -> Usage:
        """A stored usage dict (rows written before a field existed get its default)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def scored_tokens_of_first(self, chars: Sequence[int], n: int) -> float:
        """Scorer tokens scoring only the first n candidates would have cost: the shared prompt in full, the rest
        in proportion to the candidates' text (`chars`: each candidate's length). How the eval prices budget n
        from one run at the largest N."""
        per_candidate = self.num_scored_tokens - self.num_scored_prefix_tokens
        return self.num_scored_prefix_tokens + per_candidate * sum(chars[:n]) / (sum(chars) or 1)

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in vars(self)})


@dataclass
class SolveResult:
    """A strategy's answer to one problem."""

    problem_id: str = ""
    strategy: str = ""
    candidates: list[Candidate] = field(default_factory=list)
    selected: int | None = None
    """Index into `candidates` of the chosen solution; None if nothing could be chosen."""
    answer: str | None = None
    """The chosen answer (for votes: the winning class's answer)."""
    usage: Usage = field(default_factory=Usage)
    details: dict = field(default_factory=dict)
    """What the strategy did to get there, when it has more to say than its candidates (DeepConf online: the
    threshold and how many traces stopped early; adaptive: the waves sampled). JSON-serializable."""

    @property
    def text(self) -> str | None:
        """The chosen solution's text."""
        return None if self.selected is None else self.candidates[self.selected].text

    def to_dict(self) -> dict:
        return asdict(self)
