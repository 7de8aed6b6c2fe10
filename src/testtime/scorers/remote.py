"""`RemoteScorer`: a process reward model served over HTTP (vLLM's `/pooling` or `/classify` endpoints).

A PRM like Qwen2.5-Math-PRM or Math-Shepherd scores every step at a step-tag token: served by vLLM with step
pooling (`--pooler-config '{"pooling_type": "STEP", "step_tag_id": ...}'`), `/pooling` returns one
[P(bad), P(good)] pair per step tag, and we keep P(good). A sequence classifier (an outcome reward model)
behind `/classify` returns one probability vector per text; with `per_step=True` each step prefix is sent
as its own text, which turns it into a per-step scorer at the cost of one input per step.

Batching follows the remote engine: texts go `batch_size` per HTTP request, requests run concurrently up to
`max_concurrency`, round-robin over `base_url`s, with the same bounded retries (`engines._remote`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .._errors import ScorerError, ValidationError
from ..engines._remote import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    RemoteClient,
    gather_all,
    normalize_base_urls,
)
from ._protocol import STEP_SEPARATOR, ScoreRequest, ScorerUsage, as_request_list, split_steps

__all__ = ["RemoteScorer", "DEFAULT_PRM_TEMPLATE", "DEFAULT_STEP_TAG", "DEFAULT_SCORER_URL", "SCORER_ENDPOINTS"]

DEFAULT_SCORER_URL = "http://127.0.0.1:8001"  # server root: vLLM serves /pooling and /classify outside /v1
SCORER_ENDPOINTS = ("pooling", "classify")
DEFAULT_STEP_TAG = "<extra_0>"  # Qwen2.5-Math-PRM's step separator token
DEFAULT_PRM_TEMPLATE = (
    # Qwen2.5-Math-PRM's input: its chat template applied to (system, question, steps joined by the step tag).
    "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
    "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{steps}<|im_end|>\n"
)
DEFAULT_BATCH_SIZE = 16  # texts per HTTP request


class RemoteScorer:
    """Scores candidates with a reward model behind an HTTP endpoint.

    Args:
        model: The served reward model's name.
        base_url: Server root(s) (no /v1), one or several used round-robin.
        endpoint: "pooling" (per-step PRM scores at step tags) or "classify" (one probability per text).
        template: The model's input with `{question}` and `{steps}` placeholders (plain replacement, so LaTeX
            braces need no escaping). Default: Qwen2.5-Math-PRM's chat format.
        step_tag: Written after every step for "pooling" (the token the server's step pooler reads).
        positive_index: Which class probability means "correct" (1 for [bad, good] heads).
        per_step: For "classify": score every step prefix, not only the whole solution.
        sigmoid: Apply a sigmoid to raw reward logits (models whose head returns unbounded values).
        batch_size: Texts per HTTP request.
        tokenizer: Counts tokens when a server reports no `usage`.
        api_key, max_concurrency, max_retries, timeout, backoff: As for `OpenAIEngine`.
    """

    name = "remote"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | Sequence[str] = DEFAULT_SCORER_URL,
        endpoint: str = "pooling",
        template: str = DEFAULT_PRM_TEMPLATE,
        step_tag: str = DEFAULT_STEP_TAG,
        positive_index: int = 1,
        per_step: bool = False,
        sigmoid: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        tokenizer=None,
        api_key: str | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        backoff: float = DEFAULT_BACKOFF,
    ) -> None:
        if endpoint not in SCORER_ENDPOINTS:
            raise ValidationError(f"`endpoint` must be one of {', '.join(SCORER_ENDPOINTS)}, got {endpoint!r}.", parameter="endpoint", value=endpoint)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.", parameter="batch_size", value=batch_size)
        if "{steps}" not in template:
            raise ValidationError("`template` must contain the `{steps}` placeholder.", parameter="template", value=template)
        if not isinstance(positive_index, int) or positive_index < 0:
            raise ValidationError(f"`positive_index` must be an integer >= 0, got {positive_index!r}.", parameter="positive_index", value=positive_index)
        self.model = model
        self.base_urls = normalize_base_urls(base_url)
        self.endpoint = endpoint
        self.template = template
        self.step_tag = step_tag
        self.positive_index = positive_index
        self.per_step = per_step
        self.sigmoid = sigmoid
        self.batch_size = batch_size
        self.tokenizer = tokenizer
        self.client = RemoteClient(
            self.base_urls,
            api_key=api_key,
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            timeout=timeout,
            backoff=backoff,
            what="RemoteScorer",
            error=ScorerError,
        )
        self.usage = ScorerUsage()

    def __repr__(self) -> str:
        return f"RemoteScorer({self.model!r}, base_url={','.join(self.base_urls)!r}, endpoint={self.endpoint!r})"

    def close(self) -> None:
        self.client.close()

    def _text(self, question: str, steps: list[str]) -> str:
        if self.endpoint == "pooling":
            body = "".join(s + self.step_tag for s in steps)
        else:
            body = STEP_SEPARATOR.join(steps)
        return self.template.replace("{question}", question).replace("{steps}", body)

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]:
        """Per request, per candidate, the step scores in [0, 1]; input order."""
        reqs = as_request_list(requests)
        self.usage.num_calls += 1
        texts: list[str] = []
        where: list[tuple[int, int, int]] = []  # (request, candidate, number of steps the text should score)
        for i, r in enumerate(reqs):
            for j, cand in enumerate(r.candidates):
                steps = split_steps(cand)
                if not steps:
                    continue  # nothing to score: the empty list reduces to 0.0
                if self.endpoint == "classify" and self.per_step:
                    for s in range(len(steps)):
                        texts.append(self._text(r.question, steps[: s + 1]))
                        where.append((i, j, 1))
                else:
                    texts.append(self._text(r.question, steps))
                    where.append((i, j, len(steps) if self.endpoint == "pooling" else 1))
        batches = [texts[s : s + self.batch_size] for s in range(0, len(texts), self.batch_size)]
        results = self.client.run(gather_all([self._post(b) for b in batches])) if batches else []
        flat = [scores for batch in results for scores in batch]
        out: list[list[list[float]]] = [[[] for _ in r.candidates] for r in reqs]
        for (i, j, num_steps), raw in zip(where, flat, strict=True):
            out[i][j].extend(self._step_scores(raw, num_steps))
        return out

    async def _post(self, texts: list[str]) -> list:
        url, data = await self.client.post(f"/{self.endpoint}", {"model": self.model, "input": texts})
        where = f"{url}/{self.endpoint}"
        items = data.get("data")
        if not isinstance(items, list) or len(items) != len(texts):
            raise ScorerError(f"RemoteScorer: {where} returned {len(items) if isinstance(items, list) else 'no'} results for {len(texts)} inputs")
        items = sorted(items, key=lambda d: d.get("index", 0)) if all(isinstance(d, dict) for d in items) else items
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        tokens = usage.get("prompt_tokens")
        if tokens is None:
            if self.tokenizer is None:
                raise ScorerError(f"RemoteScorer: {where} reported no `usage`; pass `tokenizer=` so scored tokens can be counted here")
            tokens = sum(len(self.tokenizer(t, add_special_tokens=False).input_ids) for t in texts)
        self.usage.num_tokens += int(tokens)
        key = "data" if self.endpoint == "pooling" else "probs"
        return [d.get(key) if isinstance(d, dict) else None for d in items]

    def _prob(self, value) -> float:
        if isinstance(value, list):  # a class-probability vector
            if len(value) <= self.positive_index:
                raise ScorerError(f"RemoteScorer: got {len(value)} class probabilities, but `positive_index` is {self.positive_index}")
            value = value[self.positive_index]
        if not isinstance(value, (int, float)):
            raise ScorerError(f"RemoteScorer: expected a number or a list of class probabilities, got {value!r}")
        x = 1.0 / (1.0 + math.exp(-value)) if self.sigmoid else float(value)
        if not 0.0 <= x <= 1.0:
            raise ScorerError(f"RemoteScorer: got score {x}, outside [0, 1]; for a reward model that returns logits, set sigmoid=True")
        return x

    def _step_scores(self, raw, num_steps: int) -> list[float]:
        """Scores from one result: /classify gives a class-probability vector (one outcome score); /pooling
        gives one class vector per step tag (a 2-D list), one reward per step (a list of numbers), or one
        outcome reward (a number)."""
        if self.endpoint == "classify" or isinstance(raw, (int, float)):
            return [self._prob(raw)]
        if not isinstance(raw, list) or not all(isinstance(v, (list, int, float)) for v in raw):
            raise ScorerError(f"RemoteScorer: expected per-step scores from /pooling, got {str(raw)[:80]}")
        scores = [self._prob(v) for v in raw]
        if len(scores) != num_steps:
            raise ScorerError(
                f"RemoteScorer: the reward model returned {len(scores)} step scores for {num_steps} steps; check that "
                f"`step_tag` ({self.step_tag!r}) is the token the server's step pooler reads (step_tag_id)"
            )
        return scores
