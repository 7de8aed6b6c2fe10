"""`TextLiveBatch`: the live-batch operations for engines that can only continue from a text prefix.

Remote servers (vLLM, OpenAI-compatible) keep no state between calls, so each row is kept here as text and
every `advance` sends one continuation request per live row (the request's partial answer plus the row's
text so far). Strategies run unchanged; the cost shows up honestly in `usage.num_prefill_tokens`, which grows
by the whole prefix on every advance (servers with prefix caching recover most of it).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .._errors import EngineError, ValidationError
from ._confidence import ConfidenceStop, token_confidence
from ._live import as_lists, check_first_index, confidence_windows
from ._protocol import StepOutput
from ._sampling import derive_seed
from ._types import Completion, EngineUsage, Request, SamplingParams, TokenLogprobs

__all__ = ["TextLiveBatch"]


@dataclass
class _TextRow:
    request_index: int
    request: Request
    params: SamplingParams
    seed: int
    index: int = 0
    text: str = ""
    token_ids: list[int] | None = None  # None once a server returns a completion without ids
    num_tokens: int = 0
    cumulative_logprob: float | None = 0.0
    finish_reason: str | None = None
    stop_reason: str | None = None
    stop_index: int | None = None
    num_forks: int = 0
    logprobs: TokenLogprobs | None = None  # when params.logprobs asks for them

    def fork(self) -> _TextRow:
        self.num_forks += 1
        seed = derive_seed(self.seed, self.num_tokens, self.num_forks)
        token_ids = None if self.token_ids is None else list(self.token_ids)
        logprobs = None if self.logprobs is None else self.logprobs.copy()
        return replace(self, seed=seed, token_ids=token_ids, num_forks=0, logprobs=logprobs)


DEFAULT_CONFIDENCE_CHUNK = 16
"""Tokens per continuation request while a `confidence_stop` watches a row: a row that drops below its
threshold runs on to the end of its chunk (those tokens are generated and counted), so smaller chunks stop
closer to the drop for more requests."""


class TextLiveBatch:
    """`LiveBatch` over any engine's `generate` with partial-answer continuation."""

    confidence_chunk: int = DEFAULT_CONFIDENCE_CHUNK

    def __init__(self, engine, requests=(), params=None) -> None:
        self.engine = engine
        self.usage: EngineUsage = engine.usage
        self.rows: list[_TextRow] = []
        self._num_requests = 0
        self._seeds = random.Random(getattr(engine, "seed", None))
        reqs, plist = as_lists(requests, params)
        if reqs:
            self.add(reqs, plist)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def request_indices(self) -> list[int]:
        return [r.request_index for r in self.rows]

    supports_add = True

    def add(self, requests, params=None, *, first_index: int = 0) -> None:
        reqs, plist = as_lists(requests, params)
        check_first_index(first_index)
        for i, (req, p) in enumerate(zip(reqs, plist)):
            seed = p.seed if p.seed is not None else self._seeds.getrandbits(63)
            for j in range(first_index, first_index + p.n):
                ids = [] if req.partial_token_ids is not None or not req.partial else None
                lp = None if p.logprobs is None else TokenLogprobs(kl_from_uniform=[])
                self.rows.append(_TextRow(self._num_requests + i, req, p, derive_seed(seed, j), index=j, token_ids=ids, logprobs=lp))
        self._num_requests += len(reqs)

    def reorder(self, rows: Sequence[int]) -> None:
        n = len(self.rows)
        seen: set[int] = set()
        new_rows = []
        for r in rows:
            r = int(r)
            if not 0 <= r < n:
                raise ValidationError(f"reorder got row {r}, but the batch has rows 0..{n - 1}.", parameter="rows", value=r)
            new_rows.append(self.rows[r] if r not in seen else self.rows[r].fork())
            seen.add(r)
        self.rows = new_rows

    def advance(self, max_tokens: int | None = None, *, stop: Sequence[str] = (), confidence_stop: ConfidenceStop | None = None) -> list[StepOutput]:
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise ValidationError(f"`max_tokens` must be an integer >= 1 or None, got {max_tokens!r}.", parameter="max_tokens", value=max_tokens)
        stop = list(stop)
        windows = confidence_windows(self.rows, confidence_stop)
        out = [StepOutput(reason=r.finish_reason) for r in self.rows]
        going = [b for b, r in enumerate(self.rows) if r.finish_reason is None]
        while going:
            # A row whose confidence is checked goes `confidence_chunk` tokens per request, then is checked token
            # by token over what came back; the others go in one request.
            limits = []
            for b in going:
                left = None if max_tokens is None else max_tokens - out[b].num_tokens
                if windows[b] is not None:
                    left = self.confidence_chunk if left is None else min(left, self.confidence_chunk)
                limits.append(left)
            steps = self._advance_once(going, limits, stop)
            again = []
            for b, step, asked in zip(going, steps, limits):
                o, row = out[b], self.rows[b]
                o.text += step.text
                o.num_tokens += step.num_tokens
                o.reason = step.reason
                if windows[b] is not None and not step.finished and step.num_tokens:
                    for top in row.logprobs.top_logprobs[len(row.logprobs) - step.num_tokens :]:
                        windows[b].push(token_confidence(top))
                        if windows[b].full and windows[b].mean < confidence_stop.thresholds[b]:
                            o.reason = "confidence"
                            break
                if o.reason == "limit" and (max_tokens is None or o.num_tokens < max_tokens):
                    again.append(b)  # only the chunk ended
            going = again
        return out

    def _advance_once(self, rows: list[int], limits: list[int | None], stop: list[str]) -> list[StepOutput]:
        """One continuation request per row in `rows`, each for at most its `limits` tokens (None: to the end)."""
        requests, params = [], []
        for b, limit in zip(rows, limits):
            row = self.rows[b]
            req = row.request
            ids = None if row.token_ids is None else list(req.partial_token_ids or []) + row.token_ids
            requests.append(replace(req, partial=req.partial + row.text, partial_token_ids=ids))
            remaining = row.params.max_tokens - row.num_tokens
            params.append(
                replace(
                    row.params,
                    n=1,
                    max_tokens=min(remaining, limit) if limit is not None else remaining,
                    stop=[*row.params.stop, *[s for s in stop if s not in row.params.stop]],
                    include_stop_str_in_output=True,
                    seed=derive_seed(row.seed, row.num_tokens),
                )
            )
        results = self.engine.generate(requests, params)
        out = [StepOutput() for _ in rows]
        for b, o, res, p in zip(rows, out, results, params):
            self._apply(self.rows[b], o, res.completions[0], p.max_tokens)
        return out

    def _apply(self, row: _TextRow, o: StepOutput, c: Completion, asked: int) -> None:
        start = len(row.text)
        row.text += c.text
        row.num_tokens += c.num_tokens
        if row.token_ids is not None:
            row.token_ids = row.token_ids + c.token_ids if c.token_ids or not c.num_tokens else None
        if row.cumulative_logprob is not None and c.cumulative_logprob is not None:
            row.cumulative_logprob += c.cumulative_logprob
        else:
            row.cumulative_logprob = None
        if row.logprobs is not None:
            if c.logprobs is None or len(c.logprobs) != c.num_tokens:
                got = "none" if c.logprobs is None else f"{len(c.logprobs)} for {c.num_tokens} tokens"
                raise EngineError(f"{self.engine!r} was asked for logprobs and returned {got}; use a server that returns per-token logprobs.")
            row.logprobs.extend(c.logprobs)
        o.text, o.num_tokens = c.text, c.num_tokens
        if c.finish_reason == "stop" and c.stop_reason in row.params.stop:
            row.finish_reason = o.reason = "stop"
            row.stop_reason = c.stop_reason
            found = row.text.find(c.stop_reason, start)
            row.stop_index = found if found >= 0 else len(row.text)
        elif c.finish_reason == "stop":
            o.reason = "boundary"
        elif c.finish_reason == "eos":
            row.finish_reason = o.reason = "eos"
        elif row.num_tokens >= row.params.max_tokens:
            row.finish_reason = o.reason = "length"
        else:
            o.reason = "limit" if c.num_tokens >= asked else "eos"
            if o.reason == "eos":
                row.finish_reason = "eos"

    def completion(self, row: int, index: int | None = None) -> Completion:
        r = self.rows[row]
        text = r.text
        if r.finish_reason == "stop" and r.stop_index is not None:
            text = text[: r.stop_index + (len(r.stop_reason) if r.params.include_stop_str_in_output else 0)]
        return Completion(
            index=r.index if index is None else index,
            text=text,
            token_ids=list(r.token_ids or []),
            cumulative_logprob=r.cumulative_logprob,
            finish_reason=r.finish_reason,
            stop_reason=r.stop_reason,
            num_generated_tokens=None if r.token_ids is not None else r.num_tokens,
            logprobs=None if r.logprobs is None else r.logprobs.copy(),
        )

    def is_finished(self, row: int) -> bool:
        return self.rows[row].finish_reason is not None
