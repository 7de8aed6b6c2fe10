"""Parse and validate one `POST /v1/chat/completions` body into a `ChatRequest`.

Validation is by hand, not by a pydantic model, so each error names the field in OpenAI's error format
(`param`) and says what is allowed, instead of a 422 listing pydantic's locations. Fields the service cannot
honour (tools, penalties, echo...) are refused with 400 when set to anything but their default, never
silently ignored; fields that do not change the answer (`user`, `metadata`, ...) are accepted and ignored.

`logprobs: true` (with `top_logprobs` 0..20) returns the reply's per-token logprobs in OpenAI's chat format.
vLLM's continuation fields are accepted so `OpenAIEngine`'s live batch (every step-level strategy) can run
against this service: `continue_final_message: true` with `add_generation_prompt: false` continues the last
message, a partial assistant answer, and `include_stop_str_in_output` keeps a matched stop string. A
continuation is one plain sample, so it needs budget 1 of a strategy that samples without a scorer (majority,
greedy): `extra_body={"strategy": "majority", "budget": 1}`.

Where the strategy and budget come from, first match wins:
    strategy: body `strategy` > header `X-Testtime-Strategy` > the server default.
    budget:   body `budget` > header `X-Testtime-Budget` > the server default.
The response always has one choice: the strategy's answer. OpenAI's `n` asks for n independent choices, which
is not what a budget is (n candidates, one answer), so `n` may only be 1 (what generic clients send by
default); `n > 1` is refused with a 400 naming `n` rather than answered with one choice that the client would
take for n.

Numbers are checked against OpenAI's ranges: `temperature` in [0, 2], `top_p` in (0, 1], and no NaN or
Infinity anywhere (Python's JSON parser accepts both).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import ValidationError
from ..engines import MAX_LOGPROBS, SamplingParams
from ..strategies import SamplingStrategy, get_strategy, parse_strategy_spec
from ..strategies._spec import params_for
from ._config import ServeConfig

__all__ = ["ChatRequest", "parse_chat_request", "ModelNotFound", "STRATEGY_HEADER", "BUDGET_HEADER"]

MAX_TEMPERATURE = 2.0
"""OpenAI's upper bound; above it sampling is close to uniform over the vocabulary, so a larger value is a typo."""
STRATEGY_HEADER = "x-testtime-strategy"
BUDGET_HEADER = "x-testtime-budget"
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}

# field -> is the value one we can honour (its default / "off")?
_UNSUPPORTED = {
    "tools": lambda v: not v,
    "functions": lambda v: not v,
    "tool_choice": lambda v: v in (None, "none"),
    "function_call": lambda v: v in (None, "none"),
    "response_format": lambda v: v is None or (isinstance(v, dict) and v.get("type") == "text"),
    "presence_penalty": lambda v: v in (None, 0, 0.0),
    "frequency_penalty": lambda v: v in (None, 0, 0.0),
    "logit_bias": lambda v: not v,
    "audio": lambda v: v is None,
    "modalities": lambda v: v in (None, ["text"]),
    "echo": lambda v: not v,  # vLLM's: the answer would start with the last message
}


class ModelNotFound(ValidationError):
    """The request names a model this service does not serve (answered 404)."""


@dataclass
class ChatRequest:
    """A validated chat request, ready for the batching queue."""

    messages: list[dict[str, str]] = field(default_factory=list)
    """The conversation, roles normalized (developer -> system), text parts joined; ends with a user turn (a
    continuation's partial assistant message is in `partial`)."""
    partial: str | None = None
    """The assistant answer to continue (`continue_final_message`); None for a fresh answer."""
    question: str = ""
    """The last user message: what scorers see as the problem."""
    strategy: str = "majority"
    """A name in `testtime.strategies.STRATEGIES`."""
    budget: int = 4
    """Candidates to sample, in [1, ServeConfig.max_budget] (not OpenAI's `n`, which must be 1)."""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    """Per-candidate sampling (n=1; the budget is separate); `logprobs` is `top_logprobs` when the request asks
    for logprobs, else None."""
    seed: int | None = None
    """The request's seed; None draws a fresh one (not reproducible)."""
    stream: bool = False
    """Answer as server-sent events."""
    include_usage: bool = False
    """With `stream`: send a usage chunk before `[DONE]` (`stream_options.include_usage`)."""
    return_candidates: bool = False
    """Add every candidate with its answer and scores under the response's `testtime` key."""


def _fail(message: str, field: str, value: Any = None) -> ValidationError:
    return ValidationError(message, parameter=field, value=value)


def _int(body: Mapping, field: str, *, lo: int = 1, hi: int | None = None, limit_flag: str = "") -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"`{field}` must be an integer, got {value!r}.", field, value)
    if value < lo:
        raise _fail(f"`{field}` must be >= {lo}, got {value}.", field, value)
    if hi is not None and value > hi:
        raise _fail(f"`{field}` must be <= {hi} on this server{limit_flag}, got {value}.", field, value)
    return value


def _number(body: Mapping, field: str, *, lo: float, hi: float, lo_open: bool = False) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(f"`{field}` must be a finite number, got {value!r}.", field, value)
    if not ((lo < value) if lo_open else (lo <= value)) or value > hi:
        raise _fail(f"`{field}` must be in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {value!r}.", field, value)
    return float(value)


def _bool(body: Mapping, field: str) -> bool:
    value = body.get(field, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _fail(f"`{field}` must be true or false, got {value!r}.", field, value)
    return value


def _content(message: dict, k: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _fail(f"`messages[{k}].content` parts must be text; got a {kind!r} part (this service is text-only).", f"messages[{k}].content")
            texts.append(part["text"])
        return "".join(texts)
    raise _fail(f"`messages[{k}].content` must be a string or a list of text parts, got {type(content).__name__}.", f"messages[{k}].content")


def _messages(body: Mapping, config: ServeConfig, *, continuing: bool) -> list[dict[str, str]]:
    raw = body.get("messages")
    if raw is None:
        raise _fail("`messages` is required: a list of {role, content} objects.", "messages")
    if not isinstance(raw, list) or not raw:
        raise _fail("`messages` must be a non-empty list of {role, content} objects.", "messages")
    messages = []
    for k, m in enumerate(raw):
        if not isinstance(m, dict):
            raise _fail(f"`messages[{k}]` must be an object with `role` and `content`, got {type(m).__name__}.", f"messages[{k}]")
        role = m.get("role")
        if role not in ROLES:
            raise _fail(f"`messages[{k}].role` must be one of {', '.join(ROLES)}, got {role!r}.", f"messages[{k}].role", role)
        messages.append({"role": ROLES[role], "content": _content(m, k)})
    if continuing:
        if messages[-1]["role"] != "assistant" or len(messages) < 2 or messages[-2]["role"] != "user":
            roles = ", ".join(m["role"] for m in messages[-2:])
            raise _fail(f"`continue_final_message` continues an assistant message that answers a user message; the messages end with {roles}.", "messages")
    elif messages[-1]["role"] != "user":
        raise _fail(
            f"the last message must be from the user, got {messages[-1]['role']!r} (to continue an assistant message, send `continue_final_message: true`).",
            "messages",
        )
    total = sum(len(m["content"]) for m in messages)
    if total > config.max_message_chars:
        raise _fail(f"`messages` hold {total} characters; this server accepts at most {config.max_message_chars} (--max-message-chars).", "messages", total)
    return messages


def _header_budget(headers: Mapping[str, str], config: ServeConfig) -> int | None:
    raw = headers.get(BUDGET_HEADER)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise _fail(f"header `X-Testtime-Budget` must be an integer, got {raw!r}.", "X-Testtime-Budget", raw) from None
    if not 1 <= value <= config.max_budget:
        raise _fail(f"header `X-Testtime-Budget` must be in [1, {config.max_budget}] on this server (--max-budget), got {value}.", "X-Testtime-Budget", value)
    return value


def _top_logprobs(body: Mapping) -> int | None:
    """`SamplingParams.logprobs` for the request: None without `logprobs: true`, else `top_logprobs` (default 0)."""
    wanted = _bool(body, "logprobs")
    top = body.get("top_logprobs")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_LOGPROBS):
        raise _fail(f"`top_logprobs` must be an integer in [0, {MAX_LOGPROBS}], got {top!r}.", "top_logprobs", top)
    if top and not wanted:
        raise _fail(f"`top_logprobs` ({top}) needs `logprobs: true`.", "top_logprobs", top)
    return (top or 0) if wanted else None


def _continuing(body: Mapping) -> bool:
    """Whether the request continues its last (assistant) message, checking vLLM's two flags agree."""
    continuing = _bool(body, "continue_final_message")
    generation_prompt = body.get("add_generation_prompt")
    if generation_prompt is not None and not isinstance(generation_prompt, bool):
        raise _fail(f"`add_generation_prompt` must be true or false, got {generation_prompt!r}.", "add_generation_prompt", generation_prompt)
    if continuing and generation_prompt:
        raise _fail("`add_generation_prompt` must be false with `continue_final_message: true` (the answer continues the last message).", "add_generation_prompt", True)
    if generation_prompt is False and not continuing:
        raise _fail("`add_generation_prompt: false` is only for continuing a message; send `continue_final_message: true` with it, or leave it unset.", "add_generation_prompt", False)
    return continuing


def _top_k(body: Mapping) -> int:
    value = body.get("top_k")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise _fail(f"`top_k` must be an integer >= 0 (or -1, vLLM's \"off\"), got {value!r}.", "top_k", value)
    return max(value, 0)


def parse_chat_request(body: Any, headers: Mapping[str, str], config: ServeConfig, *, has_scorer: bool) -> ChatRequest:
    """Validate a request body (and the testtime headers) against the service's limits."""
    if not isinstance(body, dict):
        raise _fail(f"the request body must be a JSON object, got {type(body).__name__}.", "body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _fail(f"`model` is required; this server serves {config.model_name!r}.", "model", model)
    if model != config.model_name:
        raise ModelNotFound(f"model {model!r} is not served here; use {config.model_name!r} (see GET /v1/models).", parameter="model", value=model)
    for name, ok in _UNSUPPORTED.items():
        if name in body and not ok(body[name]):
            raise _fail(f"`{name}` is not supported by testtime serve (got {body[name]!r}); leave it unset.", name, body[name])
    continuing = _continuing(body)
    messages = _messages(body, config, continuing=continuing)
    partial = messages.pop()["content"] if continuing else None

    name = body.get("strategy")
    if name is None:
        name = headers.get(STRATEGY_HEADER, "").strip() or config.default_strategy
    if not isinstance(name, str):
        raise _fail(f"`strategy` must be a string, got {name!r}.", "strategy", name)
    cls = get_strategy(name)
    if ":" in name:  # a spec (deepconf:keep=0.9): its keys and values are checked now, not when the batch runs
        spec_params = parse_strategy_spec(name)[1]
        if "n" in spec_params:
            raise _fail(f"strategy {name!r} sets `n`; the budget is `budget` (extra_body) or the X-Testtime-Budget header.", "strategy", name)
        params_for(cls, name, spec_params)
    if cls.needs_scorer and not has_scorer:
        raise _fail(f"strategy {name!r} ranks candidates with a scorer, and this server runs without one; use majority or greedy, or start the server with --scorer.", "strategy", name)
    if cls.needs_policy and config.policy is None:
        raise _fail("strategy 'optimal' needs a compute-optimal policy, and this server has none; start it with --policy FILE (written by `testtime optimize`).", "strategy", name)

    limit = f" (--max-budget {config.max_budget})"
    n = _int(body, "n")
    if n is not None and n != 1:
        raise _fail(
            f"`n` must be 1: testtime serve returns one choice, the strategy's answer over its candidates, got {n}; "
            "set the number of candidates with `budget` (extra_body) or the X-Testtime-Budget header.",
            "n",
            n,
        )
    budget = _int(body, "budget", hi=config.max_budget, limit_flag=limit)
    if budget is None:
        budget = _header_budget(headers, config)
    if budget is None:
        budget = config.default_budget
    if continuing and (not issubclass(cls, SamplingStrategy) or cls.needs_scorer):
        raise _fail(f"`continue_final_message` continues one plain sample; strategy {name!r} does not make one: use majority or greedy with budget 1.", "strategy", name)
    if continuing and budget != 1:
        raise _fail(f"`continue_final_message` continues one sample, so the budget must be 1, got {budget}; send `budget: 1` (extra_body) or the header X-Testtime-Budget: 1.", "budget", budget)

    tok_limit = f" (--max-tokens-limit {config.max_tokens_limit})"
    max_tokens = _int(body, "max_tokens", hi=config.max_tokens_limit, limit_flag=tok_limit)
    max_completion = _int(body, "max_completion_tokens", hi=config.max_tokens_limit, limit_flag=tok_limit)
    if max_tokens is not None and max_completion is not None and max_tokens != max_completion:
        raise _fail(f"`max_tokens` ({max_tokens}) and `max_completion_tokens` ({max_completion}) disagree; send one.", "max_completion_tokens", max_completion)
    max_tokens = max_tokens or max_completion or config.default_max_tokens

    temperature = _number(body, "temperature", lo=0.0, hi=MAX_TEMPERATURE)
    top_p = _number(body, "top_p", lo=0.0, hi=1.0, lo_open=True)
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise _fail(f"`stop` must be a string or a list of non-empty strings, got {stop!r}.", "stop", stop)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _fail(f"`seed` must be an integer, got {seed!r}.", "seed", seed)
    sampling = SamplingParams(
        max_tokens=max_tokens,
        temperature=config.temperature if temperature is None else temperature,
        top_p=config.top_p if top_p is None else top_p,
        top_k=_top_k(body),
        stop=stop,
        include_stop_str_in_output=_bool(body, "include_stop_str_in_output"),  # vLLM's; step-level search keeps stops
        ignore_eos=_bool(body, "ignore_eos"),  # vLLM's extension; benchmarks force exact lengths with it
        logprobs=_top_logprobs(body),
    )
    stream = _bool(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _fail(f"`stream_options` must be an object, got {options!r}.", "stream_options", options)
    include_usage = _bool(options or {}, "include_usage")
    return ChatRequest(
        messages=messages,
        partial=partial,
        question=messages[-1]["content"],
        strategy=name,
        budget=budget,
        sampling=sampling,
        seed=seed,
        stream=stream,
        include_usage=include_usage,
        return_candidates=_bool(body, "return_candidates"),
    )
