"""The reply's per-token logprobs in OpenAI's chat format, and the few facts about the reply the format needs.

OpenAI's shape (vLLM returns the same): `choices[0].logprobs = {"content": [{"token", "logprob", "bytes",
"top_logprobs": [{"token", "logprob", "bytes"}]}]}`, one entry per generated token, EOS not included. Tokens
are strings: remote engines give the server's strings as they are; in-process engines give ids, decoded here
one token at a time (special tokens spelled out, as vLLM does), so a token that is part of a multi-byte
character reads "\ufffd" and its `bytes` are those of that replacement character, as in vLLM.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Protocol, runtime_checkable

from ..engines import SamplingParams, TokenLogprobs
from ..strategies import Candidate, SolveResult

__all__ = ["LOGPROB_FLOOR", "chosen", "logprobs_content", "stop_reason", "with_token_strings"]

LOGPROB_FLOOR = -9999.0
"""What -inf is sent as (JSON has no infinity; vLLM and OpenAI use the same floor)."""


@runtime_checkable
class _HasTokenizer(Protocol):
    tokenizer: object


def chosen(result: SolveResult) -> Candidate | None:
    """The reply's candidate: the selected one, else candidate 0 (what a single sample would have said)."""
    cands = result.candidates
    return cands[result.selected] if result.selected is not None else (cands[0] if cands else None)


def stop_reason(candidate: Candidate | None, sampling: SamplingParams) -> str | None:
    """vLLM's `stop_reason`: the stop string that ended the reply, None for end-of-sequence or length.

    A `Candidate` does not record which stop string matched, so it is read from the text: with
    `include_stop_str_in_output` the text ends with it (the longest such stop, which started first); without,
    it is the request's only stop string, and None when there were several."""
    if candidate is None or candidate.finish_reason != "stop" or not sampling.stop:
        return None
    if sampling.include_stop_str_in_output:
        ends = [s for s in sampling.stop if candidate.text.endswith(s)]
        return max(ends, key=len) if ends else None
    return sampling.stop[0] if len(sampling.stop) == 1 else None


def with_token_strings(logprobs: TokenLogprobs, engine) -> TokenLogprobs:
    """A copy of `logprobs` whose tokens are strings. Call it on the thread that owns the engine: a fast
    tokenizer shared with a thread that is encoding raises "Already borrowed"."""
    ids = {t for t in logprobs.tokens if isinstance(t, int)} | {t for top in logprobs.top_tokens for t in top if isinstance(t, int)}
    if not ids:
        return logprobs
    tokenizer = engine.tokenizer if isinstance(engine, _HasTokenizer) else None
    order = sorted(ids)
    if tokenizer is not None:
        texts = tokenizer.batch_decode([[i] for i in order], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    else:
        texts = [f"token_id:{i}" for i in order]  # vLLM's spelling with --return-tokens-as-token-ids
    name = dict(zip(order, texts, strict=True))

    def text(t):
        return name[t] if isinstance(t, int) else t

    return replace(logprobs, tokens=[text(t) for t in logprobs.tokens], top_tokens=[[text(t) for t in top] for top in logprobs.top_tokens])


def _entry(token: str, logprob: float) -> dict:
    value = logprob if math.isfinite(logprob) else LOGPROB_FLOOR
    return {"token": token, "logprob": max(value, LOGPROB_FLOOR), "bytes": list(token.encode("utf-8", errors="replace"))}


def logprobs_content(logprobs: TokenLogprobs, top_logprobs: int) -> dict:
    """`{"content": [...]}` for a reply whose tokens are strings (`with_token_strings`), with at most
    `top_logprobs` top entries per token (a strategy may have asked the engine for more, e.g. DeepConf)."""
    content = []
    for token, value, top_values, top_tokens in zip(logprobs.tokens, logprobs.logprobs, logprobs.top_logprobs, logprobs.top_tokens, strict=True):
        top = [_entry(t, v) for t, v in zip(top_tokens[:top_logprobs], top_values[:top_logprobs], strict=True)]
        content.append({**_entry(token, value), "top_logprobs": top})
    return {"content": content}
