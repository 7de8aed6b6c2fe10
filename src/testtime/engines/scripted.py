"""`ScriptedEngine`: a fake engine driven by a handler function, for tests and examples.

Like httpx's `MockTransport`, it is injected exactly where a real engine goes, and every strategy runs on it.
The handler returns the text the "model" would write after the request's partial answer; the engine applies
the rest of the contract (max_tokens, stop strings, finish reasons, seeds, usage), with one token per
character by default so token counts in tests are easy to reason about.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ._detok import find_stop
from ._live import as_lists
from ._types import Completion, EngineUsage, Request, RequestOutput, SamplingParams, TokenLogprobs
from .text_batch import TextLiveBatch

__all__ = ["ScriptedEngine", "Handler", "Scripted"]


@dataclass
class Scripted:
    """A handler's answer with the log-probabilities the "model" gives its tokens (one entry per token)."""

    text: str = ""
    logprobs: list[float] = field(default_factory=list)
    """The sampled token's logprob, per token; missing entries are 0.0."""
    top_logprobs: list[list[float]] = field(default_factory=list)
    """The top logprobs at each token, descending; a request for k gets the first k (missing: the sampled
    token's logprob repeated)."""


Handler = Callable[[Request, SamplingParams, int], "str | Scripted"]
"""handler(request, params, index) -> the full continuation after `request.partial`, ending where the model
would emit end-of-sequence, as text or as `Scripted` (text with per-token logprobs). `params.seed` is the
completion's own seed (distinct per index and per advance)."""


class ScriptedEngine:
    """An `Engine` whose completions come from `handler`.

    Args:
        handler: See `Handler`.
        tokenize: Splits text into tokens for counting (default: one token per character).
    """

    def __init__(self, handler: Handler, *, tokenize: Callable[[str], Sequence[str]] = list) -> None:
        self.handler = handler
        self.tokenize = tokenize
        self.usage = EngineUsage()
        self.calls: list[tuple[Request, SamplingParams]] = []  # every request generated, for assertions
        self.seed = 0

    def __repr__(self) -> str:
        return f"ScriptedEngine({getattr(self.handler, '__name__', 'handler')})"

    def _prompt_tokens(self, request: Request) -> int:
        text = request.prompt if request.prompt is not None else "".join(m["content"] for m in request.messages)
        return len(self.tokenize(text + request.partial))

    def _complete(self, request: Request, params: SamplingParams, index: int) -> Completion:
        answer = self.handler(request, params, index)
        script = answer if isinstance(answer, Scripted) else Scripted(text=answer)
        tokens = list(self.tokenize(script.text))
        finish, stop_reason, text = "eos", None, "".join(tokens)
        if params.max_tokens < len(tokens):
            tokens, finish = tokens[: params.max_tokens], "length"
            text = "".join(tokens)
        if params.stop:
            hit = find_stop(text, params.stop, 0)
            if hit is not None:
                stop, at = hit
                end = at + len(stop)
                # Keep whole tokens up to the one that completes the stop string, like a real engine.
                kept, length = [], 0
                for t in tokens:
                    kept.append(t)
                    length += len(t)
                    if length >= end:
                        break
                tokens, finish, stop_reason = kept, "stop", stop
                text = "".join(tokens)[: end if params.include_stop_str_in_output else at]
        lps = [script.logprobs[t] if t < len(script.logprobs) else 0.0 for t in range(len(tokens))]
        logprobs = None
        if params.logprobs is not None:
            k = params.logprobs
            tops = [(script.top_logprobs[t] if t < len(script.top_logprobs) else [lps[t]] * k)[:k] for t in range(len(tokens))]
            logprobs = TokenLogprobs(logprobs=lps, tokens=list(tokens), top_logprobs=tops, top_tokens=[[f"t{j}" for j in range(len(v))] for v in tops])
        return Completion(index=index, text=text, finish_reason=finish, stop_reason=stop_reason, num_generated_tokens=len(tokens), cumulative_logprob=sum(lps), logprobs=logprobs)

    def generate(self, requests, params=None, *, use_tqdm: bool = False) -> list[RequestOutput]:
        reqs, plist = as_lists(requests, params)
        self.usage.num_calls += 1
        outputs = []
        for req, p in zip(reqs, plist):
            self.calls.append((req, p))
            completions = []
            for i in range(p.n):
                seeded = p if p.n == 1 else SamplingParams(**{**vars(p), "n": 1, "seed": None if p.seed is None else p.seed + i})
                completions.append(self._complete(req, seeded, i))
            prompt_tokens = self._prompt_tokens(req)
            self.usage.num_prefill_tokens += prompt_tokens
            self.usage.num_generated_tokens += sum(c.num_tokens for c in completions)
            outputs.append(RequestOutput(completions=completions, num_prompt_tokens=prompt_tokens))
        return outputs

    def start(self, requests=(), params=None) -> TextLiveBatch:
        return TextLiveBatch(self, requests, params)
