"""OpenAI's response shapes: a chat completion, its streamed chunks, and the error object.

The official `openai` client parses these unchanged; what testtime adds lives under one extra key,
`testtime` (strategy, budget, extracted answer, full usage and, on request, the candidates with their
scores), which OpenAI's models keep as an extra field. Each choice also carries vLLM's `stop_reason` (the stop
string that ended the reply, null otherwise), which `OpenAIEngine` reads to tell a stop string from EOS.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from ..strategies import SolveResult
from ._logprobs import chosen, logprobs_content, stop_reason
from ._request import ChatRequest

__all__ = ["completion_body", "error_body", "stream_delta", "stream_end", "stream_error", "stream_events", "stream_start"]


def _answer(result: SolveResult, req: ChatRequest) -> tuple[str, str, str | None, dict | None]:
    """The reply text, its OpenAI finish_reason, vLLM's stop_reason and the logprobs object. When nothing could
    be selected (no candidate had an extractable answer), the reply is candidate 0, what a single sample would
    have said."""
    reply = chosen(result)
    if reply is None:
        return "", "stop", None, None
    k = req.sampling.logprobs
    logprobs = logprobs_content(reply.logprobs, k) if k is not None and reply.logprobs is not None else None
    finish = "length" if reply.finish_reason == "length" else "stop"
    return reply.text, finish, stop_reason(reply, req.sampling), logprobs


def _usage(result: SolveResult, prompt_tokens: int | None) -> dict:
    u = result.usage
    # prompt_tokens: the prompt's length, as OpenAI counts it (once, whatever the budget), when the engine can
    # tokenize; else the request's share of the prefill. completion_tokens: every token generated for it, over
    # all candidates, not only the reply's. The prefill actually computed is under `testtime.usage`.
    # cached_tokens: of the prompt, the tokens the engine's prefix cache served (OpenAI's field).
    prompt = u.num_prefill_tokens + u.num_cached_prompt_tokens if prompt_tokens is None else prompt_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u.num_generated_tokens,
        "total_tokens": prompt + u.num_generated_tokens,
        "prompt_tokens_details": {"cached_tokens": min(u.num_cached_prompt_tokens, prompt)},
    }


def _extra(result: SolveResult, req: ChatRequest) -> dict:
    extra = {
        "strategy": req.strategy,
        "budget": req.budget,
        "answer": result.answer,
        "selected": result.selected,
        "num_candidates": len(result.candidates),
        "usage": asdict(result.usage),
    }
    if req.return_candidates:
        extra["candidates"] = [
            {
                "index": c.index,
                "text": c.text,
                "answer": c.answer,
                "score": c.score,
                "scores": c.scores,
                "num_tokens": c.num_tokens,
                "finish_reason": c.finish_reason,
            }
            for c in result.candidates
        ]
    return extra


def completion_body(request_id: str, created: int, model: str, result: SolveResult, req: ChatRequest, prompt_tokens: int | None = None) -> dict:
    text, finish, stop, logprobs = _answer(result, req)
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "stop_reason": stop, "logprobs": logprobs}
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": _usage(result, prompt_tokens),
        "testtime": _extra(result, req),
    }


def _event(data: dict) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _chunk(request_id: str, created: int, model: str, delta: dict, finish_reason=None, logprobs=None, choice_extra=None, **more) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs, **(choice_extra or {})}
    return _event({"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [choice], **more})


def stream_start(request_id: str, created: int, model: str) -> bytes:
    """The first server-sent event: the assistant role, no content yet."""
    return _chunk(request_id, created, model, {"role": "assistant", "content": ""})


def stream_delta(request_id: str, created: int, model: str, text: str) -> bytes:
    """A piece of the reply's content, sent while it decodes."""
    return _chunk(request_id, created, model, {"content": text})


def stream_end(request_id: str, created: int, model: str, result: SolveResult, req: ChatRequest, prompt_tokens: int | None = None, *, sent: str = "") -> list[bytes]:
    """The events after the content already `sent` (a prefix of the reply): the rest of the content (with the
    reply's logprobs), the finish reason, usage if asked, [DONE]."""
    text, finish, stop, logprobs = _answer(result, req)
    if not text.startswith(sent):  # cannot happen while the sent text holds back stop-string prefixes
        raise ValueError(f"the streamed text {sent!r} is not a prefix of the reply {text!r}")
    events = []
    if text[len(sent) :] or not sent:
        events.append(_chunk(request_id, created, model, {"content": text[len(sent) :]}, logprobs=logprobs))
    events.append(_chunk(request_id, created, model, {}, finish, choice_extra={"stop_reason": stop}, testtime=_extra(result, req)))
    if req.include_usage:
        events.append(_event({"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": _usage(result, prompt_tokens)}))
    return events + [b"data: [DONE]\n\n"]


def stream_events(request_id: str, created: int, model: str, result: SolveResult, req: ChatRequest, prompt_tokens: int | None = None) -> list[bytes]:
    """Server-sent events of the finished answer: role, content (with its logprobs), finish reason, usage if
    asked, [DONE]."""
    return [stream_start(request_id, created, model)] + stream_end(request_id, created, model, result, req, prompt_tokens)


def stream_error(message: str, *, type: str = "server_error", code: str | None = None) -> list[bytes]:
    """An error after the stream began (its status line is already sent): an error event, then [DONE], as vLLM does."""
    return [_event(error_body(message, type=type, code=code)), b"data: [DONE]\n\n"]


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error object: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
