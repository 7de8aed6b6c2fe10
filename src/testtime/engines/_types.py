"""What goes into an engine and what comes back: params (how), requests (what), outputs (what came back).

Names follow vLLM's `SamplingParams` / `RequestOutput` / `CompletionOutput` so users guess them right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .._errors import check

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MAX_LOGPROBS",
    "SamplingParams",
    "TokenLogprobs",
    "Request",
    "Completion",
    "RequestOutput",
    "EngineUsage",
    "FinishReason",
]

DEFAULT_MAX_TOKENS = 512
MAX_LOGPROBS = 20
"""Most top logprobs per token a request may ask for (vLLM's default `max_logprobs`, OpenAI's `top_logprobs` cap)."""

FinishReason = Literal["stop", "eos", "length"]
"""Why a completion ended: a stop string matched, the model emitted end-of-sequence, or `max_tokens` ran out."""


@dataclass
class SamplingParams:
    """How to sample. Every field has a default; validation happens at construction."""

    n: int = 1
    """Completions per request, >= 1. On the in-process engine the prompt is prefilled once and forked n ways."""
    max_tokens: int = DEFAULT_MAX_TOKENS
    """New tokens per completion, >= 1."""
    temperature: float = 1.0
    """>= 0; 0 is greedy (argmax), chosen explicitly rather than dividing by a tiny number."""
    top_p: float = 1.0
    """Nucleus mass in (0, 1]; 1 disables."""
    top_k: int = 0
    """Keep the k most likely tokens, >= 0; 0 disables."""
    seed: int | None = None
    """Seed for this request's completions. None draws one from the engine's own generator (not reproducible
    unless the engine was built with a seed). Completion i uses a seed derived from (seed, i)."""
    stop: list[str] = field(default_factory=list)
    """Generation ends when the text contains any of these strings (finish_reason "stop")."""
    include_stop_str_in_output: bool = False
    """Keep the matched stop string (and the rest of the token that completed it) in `text`."""
    ignore_eos: bool = False
    """Keep generating past end-of-sequence (benchmarks use this to force exactly max_tokens)."""
    logprobs: int | None = None
    """Per-token log-probabilities to return, as in vLLM: None returns none; k in [0, MAX_LOGPROBS] returns the
    sampled token's logprob and the k most likely tokens' at each position (0: the sampled token's only).
    Confidence scorers and DeepConf read them; the in-process engine computes them from the logits it already
    has (no extra forward pass), remote engines ask the server (`logprobs` / `top_logprobs`)."""

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        check(isinstance(self.n, int) and self.n >= 1, f"`n` must be an integer >= 1, got {self.n!r}.", parameter="n", value=self.n)
        check(
            isinstance(self.max_tokens, int) and self.max_tokens >= 1,
            f"`max_tokens` must be an integer >= 1, got {self.max_tokens!r}.",
            parameter="max_tokens",
            value=self.max_tokens,
        )
        check(self.temperature >= 0, f"`temperature` must be >= 0, got {self.temperature}.", parameter="temperature", value=self.temperature)
        check(0 < self.top_p <= 1, f"`top_p` must be in (0, 1], got {self.top_p}.", parameter="top_p", value=self.top_p)
        check(isinstance(self.top_k, int) and self.top_k >= 0, f"`top_k` must be an integer >= 0, got {self.top_k!r}.", parameter="top_k", value=self.top_k)
        check(
            all(isinstance(s, str) and s for s in self.stop),
            f"`stop` must be a list of non-empty strings, got {self.stop!r}.",
            parameter="stop",
            value=self.stop,
        )
        check(self.seed is None or isinstance(self.seed, int), f"`seed` must be an integer or None, got {self.seed!r}.", parameter="seed", value=self.seed)
        check(
            self.logprobs is None or (isinstance(self.logprobs, int) and not isinstance(self.logprobs, bool) and 0 <= self.logprobs <= MAX_LOGPROBS),
            f"`logprobs` must be None or an integer in [0, {MAX_LOGPROBS}], got {self.logprobs!r}.",
            parameter="logprobs",
            value=self.logprobs,
        )

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Request:
    """What to generate from: chat messages (or raw text), optionally continuing a partial assistant turn."""

    messages: list[dict[str, str]] | None = None
    """Chat messages, rendered with the model's chat template and a generation prompt."""
    prompt: str | None = None
    """Raw text prompt, used as is (no chat template). Exactly one of `messages` and `prompt` is set."""
    partial: str = ""
    """Start of the assistant's answer to continue. The output `text` holds only what comes after it."""
    partial_token_ids: list[int] | None = None
    """Token ids of `partial` as the engine generated them; continuing from them is exact token for token.
    Without them the in-process engine encodes `partial` on its own (never merged with the prompt's tokens)."""

    def __post_init__(self) -> None:
        check(
            (self.messages is None) != (self.prompt is None),
            "a Request needs exactly one of `messages` and `prompt`.",
            parameter="messages",
        )
        if self.messages is not None:
            check(
                isinstance(self.messages, list)
                and len(self.messages) > 0
                and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in self.messages),
                "`messages` must be a non-empty list of {'role': str, 'content': str} dicts.",
                parameter="messages",
                value=self.messages,
            )


@dataclass
class TokenLogprobs:
    """Log-probabilities of one completion's tokens, column by column: entry t of every list is token t of
    `Completion.token_ids` (the end-of-sequence token that ended it is not included).

    Values are under the model's own distribution (temperature 1, before top-k / top-p), like vLLM's default
    raw logprobs."""

    logprobs: list[float] = field(default_factory=list)
    """The sampled token's logprob at each position."""
    tokens: list[int | str] = field(default_factory=list)
    """The sampled token at each position: its id (in-process, vLLM) or its string (HTTP servers)."""
    top_logprobs: list[list[float]] = field(default_factory=list)
    """The k largest logprobs at each position, descending (k = `SamplingParams.logprobs`; empty lists for 0)."""
    top_tokens: list[list[int | str]] = field(default_factory=list)
    """Their tokens: ids from the in-process engine and vLLM, strings from HTTP servers."""
    kl_from_uniform: list[float] | None = None
    """KL(uniform || p) of the whole next-token distribution at each position (the per-token self-certainty of
    Kang et al. 2025), where the engine sees every logit (in-process); None where only top-k is known."""

    def __len__(self) -> int:
        return len(self.logprobs)

    def extend(self, other: TokenLogprobs) -> None:
        """Append `other`'s positions (a continuation of the same completion)."""
        self.logprobs += other.logprobs
        self.tokens += other.tokens
        self.top_logprobs += other.top_logprobs
        self.top_tokens += other.top_tokens
        if self.kl_from_uniform is not None and other.kl_from_uniform is not None and len(self.kl_from_uniform) + len(other.kl_from_uniform) == len(self.logprobs):
            self.kl_from_uniform += other.kl_from_uniform
        else:
            self.kl_from_uniform = None

    def copy(self) -> TokenLogprobs:
        return TokenLogprobs(
            logprobs=list(self.logprobs),
            tokens=list(self.tokens),
            top_logprobs=[list(t) for t in self.top_logprobs],
            top_tokens=[list(t) for t in self.top_tokens],
            kl_from_uniform=None if self.kl_from_uniform is None else list(self.kl_from_uniform),
        )


@dataclass
class Completion:
    """One generated continuation (vLLM's `CompletionOutput`)."""

    index: int = 0
    """Position among the request's n completions."""
    text: str = ""
    """Generated text, after `Request.partial`."""
    token_ids: list[int] = field(default_factory=list)
    """Generated token ids (empty when a remote server does not return them; see `num_tokens`)."""
    cumulative_logprob: float | None = None
    """Sum of the generated tokens' log-probabilities under the model (temperature 1, before top-k/top-p),
    the end-of-sequence token's included (unlike `logprobs`, which has one entry per token of `token_ids`)."""
    finish_reason: FinishReason | None = None
    """"stop", "eos" or "length"; None while a live batch row is still going."""
    stop_reason: str | None = None
    """The stop string that matched, when finish_reason is "stop"."""
    num_generated_tokens: int | None = None
    """Token count reported by a server that does not return ids; None means len(token_ids)."""
    logprobs: TokenLogprobs | None = None
    """Per-token log-probabilities when `SamplingParams.logprobs` asked for them, else None."""

    @property
    def num_tokens(self) -> int:
        return self.num_generated_tokens if self.num_generated_tokens is not None else len(self.token_ids)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestOutput:
    """All completions of one request, in index order, plus what the prompt cost."""

    completions: list[Completion] = field(default_factory=list)
    num_prompt_tokens: int = 0
    """Tokens in the rendered prompt (including the partial assistant message)."""


@dataclass
class EngineUsage:
    """Running counters an engine keeps; strategies diff snapshots to account for their compute."""

    num_prefill_tokens: int = 0
    """Prompt tokens pushed through the model (once per prompt on the in-process engine, per request on remote
    ones); tokens served from a prefix cache are not computed and count in `num_cached_prompt_tokens` instead."""
    num_cached_prompt_tokens: int = 0
    """Prompt tokens whose keys and values came from a prefix cache instead of being computed (not in
    `num_prefill_tokens`; OpenAI's `cached_tokens`)."""
    num_generated_tokens: int = 0
    """Tokens sampled and kept."""
    num_decoded_tokens: int = 0
    """Row-steps of the decode loop, including rows idle in a step (they skip the GEMMs but still sit in the
    attention call): generated / decoded is the batch's utilization."""
    num_forward_passes: int = 0
    """Model calls (prefill chunks and decode steps)."""
    num_calls: int = 0
    """generate / advance calls."""

    def copy(self) -> EngineUsage:
        return EngineUsage(**vars(self))

    def __sub__(self, other: EngineUsage) -> EngineUsage:
        return EngineUsage(**{k: v - getattr(other, k) for k, v in vars(self).items()})

    def __add__(self, other: EngineUsage) -> EngineUsage:
        return EngineUsage(**{k: v + getattr(other, k) for k, v in vars(self).items()})
