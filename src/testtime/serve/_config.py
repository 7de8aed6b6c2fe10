"""`ServeConfig`: what `testtime serve` answers, its defaults and its limits. Safe by default: every limit is on."""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import check
from ..strategies import get_strategy

__all__ = ["ServeConfig"]


@dataclass
class ServeConfig:
    """Settings of one service. Limits answer 4xx naming the field; none is enforced by clamping."""

    model_name: str = "testtime"
    """The name clients send as `model` and `GET /v1/models` lists; other names get 404."""
    api_key: str | None = None
    """When set, every /v1 request needs `Authorization: Bearer <api_key>` (401 otherwise). None disables auth."""
    default_strategy: str = "majority"
    """Strategy for requests that name none (`strategy` field or `X-Testtime-Strategy` header)."""
    default_budget: int = 4
    """Candidates per request when it names no `budget` / `X-Testtime-Budget` / `n`."""
    max_budget: int = 32
    """Largest budget a request may ask for (400 above)."""
    default_max_tokens: int = 512
    """Tokens per candidate when a request sets no `max_tokens`."""
    max_tokens_limit: int = 2048
    """Largest `max_tokens` a request may ask for (400 above)."""
    temperature: float = 0.8
    """Sampling temperature when a request sets none (the sampling strategies' default, not OpenAI's 1.0)."""
    top_p: float = 1.0
    """Nucleus mass when a request sets none."""
    max_message_chars: int = 32_000
    """Largest total length of the messages' text (400 above)."""
    max_body_bytes: int = 1_000_000
    """Largest request body (413 above)."""
    max_concurrent_requests: int = 64
    """Requests admitted at once, queued or running; more get 429 with Retry-After."""
    batch_window_ms: float = 5.0
    """How long the engine worker waits for more requests after the first one before solving the batch."""
    max_batch_requests: int = 32
    """Requests solved together in one batch at most."""
    max_concurrent_solves: int = 8
    """On an engine that takes concurrent callers (`--engine openai`): groups of requests solved at once, each
    its own `solve_batch` call; more wait for a free one. The in-process engine merges every request into one
    batch instead."""
    prefill_chunk: int | None = None
    """In-process engine: prompt tokens prefilled per scheduler tick while other requests decode; a longer prompt
    is prefilled over several ticks with decode steps in between (chunked prefill), so streamed replies pause
    for one slice at most. None: by device (256 on CPU, ~0.5 s on 2 cores; 2048 on GPU); 0: whole prompts."""
    last_number_fallback: bool = False
    """Count an unmarked final number as a candidate's answer when voting (arith/gsm8k-style prompts)."""
    policy: object = None
    """A compute-optimal policy (`strategies.optimal.Policy`, from `testtime optimize`) for requests that ask for
    `optimal`; without one such requests get 400."""

    def __post_init__(self) -> None:
        get_strategy(self.default_strategy)
        check(
            self.default_strategy != "optimal" or self.policy is not None,
            "the default strategy 'optimal' needs a policy (--policy FILE, written by `testtime optimize`).",
            parameter="policy",
        )
        for name in ("max_budget", "default_max_tokens", "max_tokens_limit", "max_message_chars", "max_body_bytes", "max_concurrent_requests", "max_batch_requests", "max_concurrent_solves"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 1, f"`{name}` must be an integer >= 1, got {value!r}.", parameter=name, value=value)
        check(
            isinstance(self.default_budget, int) and 1 <= self.default_budget <= self.max_budget,
            f"`default_budget` must be in [1, max_budget={self.max_budget}], got {self.default_budget!r}.",
            parameter="default_budget",
            value=self.default_budget,
        )
        check(
            self.default_max_tokens <= self.max_tokens_limit,
            f"`default_max_tokens` ({self.default_max_tokens}) must be <= `max_tokens_limit` ({self.max_tokens_limit}).",
            parameter="default_max_tokens",
            value=self.default_max_tokens,
        )
        check(0 <= self.temperature <= 2, f"`temperature` must be in [0, 2] (OpenAI's range), got {self.temperature}.", parameter="temperature", value=self.temperature)
        check(0 < self.top_p <= 1, f"`top_p` must be in (0, 1], got {self.top_p}.", parameter="top_p", value=self.top_p)
        check(
            self.prefill_chunk is None or (isinstance(self.prefill_chunk, int) and not isinstance(self.prefill_chunk, bool) and self.prefill_chunk >= 0),
            f"`prefill_chunk` must be an integer >= 0 (0: whole prompts) or None, got {self.prefill_chunk!r}.",
            parameter="prefill_chunk",
            value=self.prefill_chunk,
        )
        check(self.batch_window_ms >= 0, f"`batch_window_ms` must be >= 0, got {self.batch_window_ms}.", parameter="batch_window_ms", value=self.batch_window_ms)
        check(self.api_key is None or len(self.api_key) > 0, "`api_key` must be a non-empty string or None.", parameter="api_key")
