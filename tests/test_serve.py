"""`testtime serve` on loopback with the official `openai` client: answers, usage, strategy and budget per
request, streaming, auth, limits, malformed requests, batching, isolation, and a never-blocked event loop."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import openai
import pytest

from testtime import EngineError, ValidationError
from testtime.engines import SamplingParams, ScriptedEngine
from testtime.engines.scripted import Scripted
from testtime.scorers import ScriptedScorer
from testtime.serve import ServeConfig, ServerThread, create_app
from testtime.serve._batcher import Batcher, Job, ShuttingDown
from testtime.strategies import STRATEGIES, problem_seed
from testtime.tasks import Problem

KEY = "sk-test-key"
ANSWERS = ["5", "3", "5", "7"]  # candidate i answers ANSWERS[i % 4]: majority "5" (index 0), bon "7" (index 3)


def solution(answer: str) -> str:
    return f"Step 1: think.\n\nThe final answer is $\\boxed{{{answer}}}$."


SOL = {a: solution(a) for a in "0123456789"}


class Backend:
    """A scripted engine whose behaviour the question picks: "wait" blocks until `gate` is set, "boom" is a
    bad request, "explode" an engine failure, "bug" an unexpected exception, "seeded" answers by seed (and
    continues a partial answer)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.engine = ScriptedEngine(self.handler)

    def handler(self, request, params, index):
        q = request.messages[-1]["content"]
        if q == "wait":
            self.gate.wait(10)
        if q == "boom":
            raise ValidationError("prompt (9000 tokens) exceeds the model's context.", parameter="messages")
        if q == "explode":
            raise EngineError("the GPU fell over")
        if q == "bug":
            raise RuntimeError("a bug")
        if q.startswith("seeded"):
            return SOL[str(params.seed % 10)][len(request.partial) :]
        return SOL[ANSWERS[index % 4]]


def scorer():
    return ScriptedScorer(lambda q, steps: [0.9 if "{7}" in steps[-1] else 0.5])


def start(backend: Backend, scorer_=None, **config) -> ServerThread:
    base = dict(model_name="tt", api_key=KEY, max_budget=8, default_max_tokens=128, max_tokens_limit=256, max_message_chars=200, max_body_bytes=4000)
    return ServerThread(create_app(backend.engine, scorer_, ServeConfig(**{**base, **config}))).start()


@pytest.fixture(scope="module")
def server():
    backend = Backend()
    srv = start(backend, scorer())
    srv.backend = backend
    yield srv
    srv.stop()


def client(srv, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=20)


def ask(text: str = "What is 2+3?"):
    return [{"role": "user", "content": text}]


def post(srv, body, headers=None, raw: bytes | None = None):
    headers = {"Authorization": f"Bearer {KEY}", **(headers or {})}
    if raw is not None:
        return httpx.post(srv.url + "/v1/chat/completions", content=raw, headers={**headers, "Content-Type": "application/json"}, timeout=20)
    return httpx.post(srv.url + "/v1/chat/completions", json=body, headers=headers, timeout=20)


def test_openai_client_gets_a_standard_completion_with_real_usage(server):
    r = client(server).chat.completions.create(model="tt", messages=ask("hello"))
    assert r.object == "chat.completion" and r.model == "tt" and r.id.startswith("chatcmpl-")
    assert len(r.choices) == 1 and r.choices[0].message.role == "assistant" and r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == SOL["5"]  # majority of 5, 3, 5, 7: the first "5"
    # usage counts every generated token (4 candidates, one token per character here), not only the reply's.
    assert r.usage.completion_tokens == 2 * len(SOL["5"]) + len(SOL["3"]) + len(SOL["7"])
    assert r.usage.prompt_tokens == len("hello") and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    extra = r.model_extra["testtime"]
    assert (extra["strategy"], extra["budget"], extra["answer"], extra["selected"], extra["num_candidates"]) == ("majority", 4, "5", 0, 4)
    assert "candidates" not in extra


@pytest.mark.parametrize(
    "extra_body, headers, want",
    [
        pytest.param({"strategy": "bon", "return_candidates": True}, {}, ("bon", 4, "7"), id="body-strategy"),
        pytest.param({}, {"X-Testtime-Strategy": "bon", "X-Testtime-Budget": "3"}, ("bon", 3, "5"), id="headers"),
        pytest.param({"n": 1, "budget": 2}, {}, ("majority", 2, "5"), id="n-1-is-accepted"),
        pytest.param({"budget": 2}, {"X-Testtime-Budget": "3"}, ("majority", 2, "5"), id="body-beats-header"),
        pytest.param({"n": 1}, {"X-Testtime-Budget": "3"}, ("majority", 3, "5"), id="header-beats-n"),
        pytest.param({"strategy": "greedy", "budget": 8}, {}, ("greedy", 8, "5"), id="greedy"),
    ],
)
def test_strategy_and_budget_per_request(server, extra_body, headers, want):
    r = client(server).chat.completions.create(model="tt", messages=ask(), extra_body=extra_body, extra_headers=headers)
    extra = r.model_extra["testtime"]
    strategy, budget, answer = want
    assert (extra["strategy"], extra["budget"], extra["answer"]) == want
    assert extra["num_candidates"] == (1 if strategy == "greedy" else budget)
    assert r.choices[0].message.content == SOL[answer]
    assert r.usage.completion_tokens == sum(len(SOL[ANSWERS[i % 4]]) for i in range(extra["num_candidates"]))
    if extra_body.get("return_candidates"):
        assert [c["answer"] for c in extra["candidates"]] == ANSWERS
        assert [c["score"] for c in extra["candidates"]] == [0.5, 0.5, 0.5, 0.9] and extra["selected"] == 3


def test_a_strategy_spec_gets_its_params_or_a_400(server):
    """A spec is built as the eval builds it (`make_strategy`): its params are used, and an unknown one is a 400
    at once, not a strategy quietly run with its defaults."""
    bad = post(server, {"model": "tt", "messages": ask(), "strategy": "majority:nope=1"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "nope"
    assert "has no parameter 'nope'" in bad.json()["error"]["message"]
    ok = post(server, {"model": "tt", "messages": ask(), "strategy": "bon:reduction=min", "budget": 4})
    assert ok.status_code == 200 and ok.json()["testtime"]["answer"] == "7"


def test_streaming_returns_the_answer_as_openai_chunks(server):
    chunks = list(client(server).chat.completions.create(model="tt", messages=ask(), stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == SOL["5"]
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 2 * len(SOL["5"]) + len(SOL["3"]) + len(SOL["7"])
    raw = post(server, {"model": "tt", "messages": ask(), "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [line for line in raw.text.split("\n") if line]
    assert events[-1] == "data: [DONE]" and len(events) == 4
    assert json.loads(events[1][len("data: ") :])["choices"][0]["delta"]["content"] == SOL["5"]


def test_models_health_and_auth(server):
    assert [m.id for m in client(server).models.list()] == ["tt"]
    health = httpx.get(server.url + "/health").json()  # no key needed: load balancers probe it
    assert health["status"] == "ok" and health["model"] == "tt"
    for key in ["wrong-key", KEY + "x"]:
        with pytest.raises(openai.AuthenticationError) as info:
            client(server, key).chat.completions.create(model="tt", messages=ask())
        assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(server, "nope").models.list()
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "tt", "messages": ask()})
    assert r.status_code == 401 and r.json()["error"]["message"] == "missing or wrong API key; send `Authorization: Bearer <key>`."


@pytest.mark.parametrize(
    "body, headers, status, param, message",
    [
        pytest.param({"model": "tt", "messages": ask(), "budget": 9}, {}, 400, "budget", "`budget` must be <= 8 on this server (--max-budget 8), got 9.", id="budget-limit"),
        pytest.param({"model": "tt", "messages": ask(), "n": 0}, {}, 400, "n", "`n` must be >= 1, got 0.", id="n-zero"),
        pytest.param({"model": "tt", "messages": ask(), "max_tokens": 257}, {}, 400, "max_tokens", "`max_tokens` must be <= 256 on this server (--max-tokens-limit 256), got 257.", id="max-tokens-limit"),
        pytest.param({"model": "tt", "messages": ask("x" * 201)}, {}, 400, "messages", "`messages` hold 201 characters; this server accepts at most 200 (--max-message-chars).", id="message-size"),
        pytest.param({"model": "tt", "messages": ask(), "strategy": "magic"}, {}, 400, "strategy", f"unknown strategy 'magic'; choose one of: {', '.join(sorted(STRATEGIES))}", id="strategy"),
        pytest.param({"model": "tt", "messages": ask()}, {"X-Testtime-Budget": "lots"}, 400, "X-Testtime-Budget", "header `X-Testtime-Budget` must be an integer, got 'lots'.", id="header-budget"),
        pytest.param({"model": "gpt-4o", "messages": ask()}, {}, 404, "model", "model 'gpt-4o' is not served here; use 'tt' (see GET /v1/models).", id="model"),
        pytest.param({"messages": ask()}, {}, 400, "model", "`model` is required; this server serves 'tt'.", id="no-model"),
        pytest.param({"model": "tt"}, {}, 400, "messages", "`messages` is required: a list of {role, content} objects.", id="no-messages"),
        pytest.param({"model": "tt", "messages": [{"role": "user"}]}, {}, 400, "messages[0].content", "`messages[0].content` must be a string or a list of text parts, got NoneType.", id="no-content"),
        pytest.param({"model": "tt", "messages": [{"role": "tool", "content": "x"}]}, {}, 400, "messages[0].role", "`messages[0].role` must be one of system, developer, user, assistant, got 'tool'.", id="role"),
        pytest.param({"model": "tt", "messages": [*ask(), {"role": "assistant", "content": "So"}]}, {}, 400, "messages", "the last message must be from the user, got 'assistant' (to continue an assistant message, send `continue_final_message: true`).", id="last-assistant"),
        pytest.param({"model": "tt", "messages": ask(), "tools": [{"type": "function"}]}, {}, 400, "tools", "`tools` is not supported by testtime serve (got [{'type': 'function'}]); leave it unset.", id="tools"),
        pytest.param({"model": "tt", "messages": ask(), "temperature": -1}, {}, 400, "temperature", "`temperature` must be in [0, 2], got -1.", id="temperature"),
        pytest.param({"model": "tt", "messages": ask(), "temperature": 5}, {}, 400, "temperature", "`temperature` must be in [0, 2], got 5.", id="temperature-above-openai-range"),
        pytest.param({"model": "tt", "messages": ask(), "top_p": 0}, {}, 400, "top_p", "`top_p` must be in (0, 1], got 0.", id="top-p-zero"),
        pytest.param({"model": "tt", "messages": ask(), "n": 2}, {}, 400, "n", "`n` must be 1: testtime serve returns one choice, the strategy's answer over its candidates, got 2; set the number of candidates with `budget` (extra_body) or the X-Testtime-Budget header.", id="n-above-1"),
        pytest.param({"model": "tt", "messages": ask(), "strategy": "majority:n=8"}, {}, 400, "strategy", "strategy 'majority:n=8' sets `n`; the budget is `budget` (extra_body) or the X-Testtime-Budget header.", id="n-in-spec"),
        pytest.param({"model": "tt", "messages": ask(), "max_tokens": "64"}, {}, 400, "max_tokens", "`max_tokens` must be an integer, got '64'.", id="max-tokens-type"),
        pytest.param({"model": "tt", "messages": ask(), "stream": "yes"}, {}, 400, "stream", "`stream` must be true or false, got 'yes'.", id="stream-type"),
        pytest.param({"model": "tt", "messages": ask(), "top_logprobs": 2}, {}, 400, "top_logprobs", "`top_logprobs` (2) needs `logprobs: true`.", id="top-logprobs-alone"),
        pytest.param({"model": "tt", "messages": ask(), "logprobs": True, "top_logprobs": 21}, {}, 400, "top_logprobs", "`top_logprobs` must be an integer in [0, 20], got 21.", id="top-logprobs-range"),
        pytest.param({"model": "tt", "messages": ask(), "logprobs": True, "top_logprobs": -1}, {}, 400, "top_logprobs", "`top_logprobs` must be an integer in [0, 20], got -1.", id="top-logprobs-negative"),
        pytest.param({"model": "tt", "messages": ask(), "logprobs": True, "top_logprobs": "3"}, {}, 400, "top_logprobs", "`top_logprobs` must be an integer in [0, 20], got '3'.", id="top-logprobs-type"),
        pytest.param({"model": "tt", "messages": ask(), "logprobs": 5}, {}, 400, "logprobs", "`logprobs` must be true or false, got 5.", id="logprobs-type"),
        pytest.param({"model": "tt", "messages": ask(), "top_k": -2}, {}, 400, "top_k", '`top_k` must be an integer >= 0 (or -1, vLLM\'s "off"), got -2.', id="top-k"),
        pytest.param({"model": "tt", "messages": ask(), "echo": True}, {}, 400, "echo", "`echo` is not supported by testtime serve (got True); leave it unset.", id="echo"),
        pytest.param(
            {"model": "tt", "messages": ask(), "continue_final_message": True, "budget": 1},
            {}, 400, "messages", "`continue_final_message` continues an assistant message that answers a user message; the messages end with user.", id="continue-user",
        ),
        pytest.param(
            {"model": "tt", "messages": [*ask(), {"role": "assistant", "content": "So"}], "continue_final_message": True, "add_generation_prompt": True, "budget": 1},
            {}, 400, "add_generation_prompt", "`add_generation_prompt` must be false with `continue_final_message: true` (the answer continues the last message).", id="continue-generation-prompt",
        ),
        pytest.param(
            {"model": "tt", "messages": ask(), "add_generation_prompt": False},
            {}, 400, "add_generation_prompt", "`add_generation_prompt: false` is only for continuing a message; send `continue_final_message: true` with it, or leave it unset.", id="no-generation-prompt",
        ),
        pytest.param(
            {"model": "tt", "messages": [*ask(), {"role": "assistant", "content": "So"}], "continue_final_message": True},
            {}, 400, "budget", "`continue_final_message` continues one sample, so the budget must be 1, got 4; send `budget: 1` (extra_body) or the header X-Testtime-Budget: 1.", id="continue-budget",
        ),
        pytest.param(
            {"model": "tt", "messages": [*ask(), {"role": "assistant", "content": "So"}], "continue_final_message": True, "strategy": "bon", "budget": 1},
            {}, 400, "strategy", "`continue_final_message` continues one plain sample; strategy 'bon' does not make one: use majority or greedy with budget 1.", id="continue-strategy",
        ),
        pytest.param({"model": "tt", "messages": ask(), "strategy": "bon", "budget": 2}, {}, 200, None, None, id="ok-control"),
        pytest.param([1, 2], {}, 400, "body", "the request body must be a JSON object, got list.", id="not-an-object"),
        pytest.param({"model": "tt", "messages": ask("boom")}, {}, 400, "messages", "prompt (9000 tokens) exceeds the model's context.", id="engine-validation"),
        pytest.param({"model": "tt", "messages": ask("explode")}, {}, 500, None, "the GPU fell over", id="engine-error"),
        pytest.param({"model": "tt", "messages": ask("bug")}, {}, 500, None, "internal error; the server log has the traceback", id="bug"),
    ],
)
def test_bad_requests_get_a_clear_openai_error(server, body, headers, status, param, message):
    r = post(server, body, headers)
    assert r.status_code == status
    if status != 200:
        err = r.json()["error"]
        assert (err["param"], err["message"]) == (param, message)
        assert err["type"] == ("server_error" if status == 500 else "invalid_request_error")
    assert post(server, {"model": "tt", "messages": ask()}).status_code == 200  # the server lives on


@pytest.mark.parametrize(
    "raw, status, message",
    [
        pytest.param(b'{"model": "tt", "messages": [', 400, "the request body is not valid JSON (UTF-8).", id="json"),
        pytest.param(b'{"model": "tt", "pad": "' + b"x" * 5000 + b'"}', 413, "request body over 4000 bytes (--max-body-bytes).", id="body-size"),
        # 1999 levels of nesting fit the 4000-byte limit and overflow json's recursion limit (a RecursionError).
        pytest.param(b"[" * 1999 + b"]" * 1999, 400, "the request body nests JSON arrays or objects too deeply.", id="deeply-nested"),
        pytest.param(
            b'{"model": "tt", "messages": [{"role": "user", "content": "hi \\ud800 there"}]}',
            400, "the request body holds a lone surrogate (\\ud800); strings must be valid Unicode.", id="lone-surrogate",
        ),
        pytest.param(b'{"model": "tt", "messages": [{"role": "user", "content": "x"}], "temperature": Infinity}', 400, "`temperature` must be a finite number, got inf.", id="temperature-infinity"),
        pytest.param(b'{"model": "tt", "messages": [{"role": "user", "content": "x"}], "top_p": NaN}', 400, "`top_p` must be a finite number, got nan.", id="top-p-nan"),
        pytest.param(b'{"model": "tt", "messages": [{"role": "user", "content": "\xff"}]}', 400, "the request body is not valid JSON (UTF-8).", id="not-utf8"),
    ],
)
def test_malformed_bodies(server, raw, status, message):
    r = post(server, None, raw=raw)
    assert r.status_code == status and r.json()["error"]["message"] == message
    r = httpx.get(server.url + "/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def wait_for(srv, predicate, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx.get(srv.url + "/health").json()
        if predicate(health):
            return health
        time.sleep(0.01)
    raise AssertionError(f"server never reached the state; last /health: {health}")


def test_the_event_loop_answers_while_a_strategy_runs_and_overflow_gets_429():
    backend = Backend()
    srv = start(backend, max_concurrent_requests=1)
    try:
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", post(srv, {"model": "tt", "messages": ask("wait")})))
        t.start()
        health = wait_for(srv, lambda h: h["in_flight"] == 1)  # /health answers while the worker is blocked
        assert health["num_requests"] == 0
        with pytest.raises(openai.RateLimitError) as info:
            client(srv).chat.completions.create(model="tt", messages=ask())
        assert info.value.status_code == 429 and info.value.response.headers["retry-after"] == "1"
        assert info.value.body["message"] == "1 requests are in progress, the most this server admits (--max-concurrent-requests); retry shortly."
        backend.gate.set()
        t.join()
        assert result["r"].status_code == 200 and result["r"].json()["choices"][0]["message"]["content"] == SOL["5"]
        assert wait_for(srv, lambda h: h["in_flight"] == 0)["num_requests"] == 1
    finally:
        backend.gate.set()
        srv.stop()


def concurrently(srv, bodies: list[dict]) -> list[httpx.Response]:
    out: list = [None] * len(bodies)
    threads = [threading.Thread(target=lambda i=i, b=b: out.__setitem__(i, post(srv, b))) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_concurrent_requests_share_one_batch_and_a_bad_one_is_isolated():
    backend = Backend()
    srv = start(backend, batch_window_ms=400)  # wide window: both requests land in it even on a busy machine
    try:
        a, b = concurrently(srv, [{"model": "tt", "messages": ask("one")}, {"model": "tt", "messages": ask("two")}])
        assert [r.json()["choices"][0]["message"]["content"] for r in (a, b)] == [SOL["5"], SOL["5"]]
        assert backend.engine.usage.num_calls == 1  # one engine.generate for both requests
        assert srv.server.config.app.state.batcher.num_batches == 1
        ok, bad = concurrently(srv, [{"model": "tt", "messages": ask("fine")}, {"model": "tt", "messages": ask("boom")}])
        assert ok.status_code == 200 and ok.json()["testtime"]["answer"] == "5"
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"
    finally:
        srv.stop()


def test_a_seeded_request_gives_the_same_answer_alone_or_batched():
    backend = Backend()
    srv = start(backend, batch_window_ms=200)
    body = {"model": "tt", "messages": ask("seeded"), "seed": 42, "budget": 5, "return_candidates": True}
    try:
        alone = post(srv, body).json()["testtime"]["candidates"]
        batched = concurrently(srv, [{**body, "messages": ask("seeded other"), "seed": 7}, body, {"model": "tt", "messages": ask()}])
        assert batched[1].json()["testtime"]["candidates"] == alone
        other = batched[0].json()["testtime"]["candidates"]
        assert [c["answer"] for c in other] != [c["answer"] for c in alone]  # another seed, other samples
    finally:
        srv.stop()


def test_close_fails_queued_requests_and_lets_the_running_batch_finish():
    backend = Backend()
    batcher = Batcher(backend.engine, window_s=0.0)

    async def scenario():
        loop = asyncio.get_running_loop()

        def job(q: str) -> Job:
            problem = Problem(id=q, question=q, messages=ask(q))
            return Job(problem=problem, strategy="majority", budget=2, sampling=SamplingParams(max_tokens=100), future=loop.create_future(), loop=loop)

        running = batcher.submit(job("wait"))
        while backend.engine.usage.num_calls == 0:  # the worker is inside the first batch
            await asyncio.sleep(0.005)
        queued = batcher.submit(job("later"))
        closing = asyncio.ensure_future(asyncio.to_thread(batcher.close))
        with pytest.raises(ShuttingDown, match="the server is shutting down; send the request to another server"):
            await queued
        backend.gate.set()
        result = await running
        await closing
        with pytest.raises(ShuttingDown):
            await batcher.submit(job("after"))
        return result

    result = asyncio.run(scenario())
    assert result.answer == "5" and len(result.candidates) == 2 and backend.engine.usage.num_calls == 1


def test_sampling_fields_reach_the_engine(server):
    body = {"model": "tt", "messages": ask("fields"), "temperature": 0.3, "top_p": 0.9, "max_tokens": 77, "stop": "\n\nEnd", "ignore_eos": True, "budget": 3}
    body |= {"top_k": 40, "include_stop_str_in_output": True, "logprobs": True, "top_logprobs": 5}
    assert post(server, body).status_code == 200
    request, params = server.backend.engine.calls[-1]
    assert request.messages == ask("fields") and params.n == 3
    assert (params.temperature, params.top_p, params.max_tokens, params.stop, params.ignore_eos) == (0.3, 0.9, 77, ["\n\nEnd"], True)
    assert (params.top_k, params.include_stop_str_in_output, params.logprobs) == (40, True, 5)
    assert post(server, {**body, "top_k": -1, "logprobs": True, "top_logprobs": None}).status_code == 200
    assert (server.backend.engine.calls[-1][1].top_k, server.backend.engine.calls[-1][1].logprobs) == (0, 0)  # vLLM's -1 is off


def scripted_logprobs(request, params, index):
    """Candidate i answers ANSWERS[i % 4]; every token of candidate i has logprob -(i + 1) / 8, and tops
    [-(i + 1) / 8, -3, -4]."""
    text = SOL[ANSWERS[index % 4]]
    value = -(index + 1) / 8
    return Scripted(text, logprobs=[value] * len(text), top_logprobs=[[value, -3.0, -4.0]] * len(text))


def test_logprobs_are_the_chosen_candidates_in_openai_format_json_and_streamed():
    srv = ServerThread(create_app(ScriptedEngine(scripted_logprobs), scorer(), ServeConfig(model_name="tt"))).start()
    try:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        # bon picks candidate 3 (its "7" scores 0.9): the logprobs are candidate 3's, not candidate 0's.
        kwargs = dict(model="tt", messages=ask(), logprobs=True, top_logprobs=2, extra_body={"strategy": "bon", "budget": 4})
        r = c.chat.completions.create(**kwargs)
        content = r.choices[0].logprobs.content
        assert r.choices[0].message.content == SOL["7"] and len(content) == len(SOL["7"])
        assert {e.logprob for e in content} == {-0.5} and [e.token for e in content] == list(SOL["7"])
        assert [t.logprob for t in content[0].top_logprobs] == [-0.5, -3.0] and [t.token for t in content[0].top_logprobs] == ["t0", "t1"]
        assert content[1].bytes == list(SOL["7"][1].encode())
        chunks = list(c.chat.completions.create(**kwargs, stream=True))
        streamed = [e for ch in chunks if ch.choices and ch.choices[0].logprobs for e in ch.choices[0].logprobs.content]
        assert [(e.token, e.logprob, [t.logprob for t in e.top_logprobs]) for e in streamed] == [(e.token, e.logprob, [t.logprob for t in e.top_logprobs]) for e in content]
        # logprobs without top_logprobs: the sampled tokens' only (OpenAI's default top_logprobs is 0).
        r = c.chat.completions.create(model="tt", messages=ask(), logprobs=True, extra_body={"budget": 2})
        assert [e.logprob for e in r.choices[0].logprobs.content] == [-0.125] * len(SOL["5"]) and r.choices[0].logprobs.content[0].top_logprobs == []
        assert c.chat.completions.create(model="tt", messages=ask()).choices[0].logprobs is None
    finally:
        srv.stop()


def test_a_continuation_is_one_sample_from_the_partial_answer_with_vllm_stop_reason(server):
    partial = "Step 1: think."
    body = {
        "model": "tt",
        "messages": [*ask("seeded cont"), {"role": "assistant", "content": partial}],
        "continue_final_message": True,
        "add_generation_prompt": False,
        "budget": 1,
        "seed": 3,
        "stop": ["\n\n", "$."],
        "include_stop_str_in_output": True,
        "max_tokens": 100,
    }
    r = post(server, body).json()
    request, params = server.backend.engine.calls[-1]
    assert request.messages == ask("seeded cont") and request.partial == partial
    # The seed the strategy would use for this problem: one sample, same per-request seed rule.
    assert params.n == 1 and params.seed == problem_seed(0, "seed-3") and params.include_stop_str_in_output
    full = SOL[str(problem_seed(0, "seed-3") % 10)]
    assert r["choices"][0]["message"]["content"] == full[len(partial) : full.index("\n\n") + 2]
    assert (r["choices"][0]["finish_reason"], r["choices"][0]["stop_reason"]) == ("stop", "\n\n")
    assert r["usage"]["completion_tokens"] == len(r["choices"][0]["message"]["content"]) and r["testtime"]["num_candidates"] == 1
    # To the end of the answer: end-of-sequence, stop_reason null.
    r = post(server, {**body, "messages": [*ask("seeded cont"), {"role": "assistant", "content": full[:-1]}], "stop": ["\n\n"]}).json()
    assert (r["choices"][0]["message"]["content"], r["choices"][0]["finish_reason"], r["choices"][0]["stop_reason"]) == (".", "stop", None)


def test_optimal_needs_a_policy_and_dispatches_with_one():
    from testtime.strategies.optimal import Policy, PolicyEntry

    policy = Policy(entries=[PolicyEntry(level=lv, n=4, strategy="bon") for lv in range(1, 6)], edges=[0.2, 0.4, 0.6, 0.8], num_probe=4)
    backend = Backend()
    with_policy, without = start(backend, scorer(), policy=policy), start(backend, scorer())
    try:
        # Probe 4 samples (answers 5, 3, 5, 7), any predicted level -> best-of-N reusing them: "7" scores best,
        # where the server's default (majority) would answer "5".
        r = client(with_policy).chat.completions.create(model="tt", messages=ask(), extra_body={"strategy": "optimal", "budget": 6})
        assert "\\boxed{7}" in r.choices[0].message.content
        bad = post(without, {"model": "tt", "messages": ask(), "strategy": "optimal"})
        assert bad.status_code == 400 and "start it with --policy FILE" in bad.json()["error"]["message"]
    finally:
        with_policy.stop()
        without.stop()
    with pytest.raises(ValidationError, match="needs a policy"):
        ServeConfig(default_strategy="optimal")


def test_reply_logprobs_are_trimmed_to_the_request_and_json_safe():
    """A strategy may ask the engine for more top logprobs than the client (DeepConf does); the reply has the
    client's `top_logprobs`, and -inf is sent as vLLM's and OpenAI's floor, -9999.0."""
    from testtime.engines import TokenLogprobs
    from testtime.serve._format import completion_body, stream_events
    from testtime.serve._request import ChatRequest
    from testtime.strategies import Candidate, SolveResult

    lp = TokenLogprobs(logprobs=[-0.5, float("-inf")], tokens=["a", "é"], top_logprobs=[[-0.5, -1.0, -2.0], [-0.25, -3.0, float("-inf")]], top_tokens=[["a", "b", "c"], ["x", "y", "z"]])
    result = SolveResult(candidates=[Candidate(index=0, text="aé", finish_reason="stop", logprobs=lp)], selected=0)
    req = ChatRequest(sampling=SamplingParams(logprobs=1, stop=["é", "aé"], include_stop_str_in_output=True))
    choice = completion_body("id", 0, "tt", result, req)["choices"][0]
    assert choice["logprobs"]["content"] == [
        {"token": "a", "logprob": -0.5, "bytes": [97], "top_logprobs": [{"token": "a", "logprob": -0.5, "bytes": [97]}]},
        {"token": "é", "logprob": -9999.0, "bytes": [195, 169], "top_logprobs": [{"token": "x", "logprob": -0.25, "bytes": [120]}]},
    ]
    assert choice["stop_reason"] == "aé"  # both stops end the text: the longer one started first
    events = [json.loads(e[len(b"data: ") :]) for e in stream_events("id", 0, "tt", result, req)[:-1]]
    assert events[1]["choices"][0]["logprobs"] == choice["logprobs"] and events[2]["choices"][0]["stop_reason"] == "aé"
    assert completion_body("id", 0, "tt", result, ChatRequest())["choices"][0]["logprobs"] is None


def test_models_retrieve_names_the_served_model_and_404s_others(server):
    c = client(server)
    m = c.models.retrieve("tt")
    assert (m.id, m.object, m.owned_by) == ("tt", "model", "testtime")
    with pytest.raises(openai.NotFoundError) as info:
        c.models.retrieve("org/other-model")  # an id with a slash, as hub names have
    assert info.value.body == {"message": "model 'org/other-model' is not served here; this server serves 'tt'.", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
    with pytest.raises(openai.AuthenticationError):
        client(server, "nope").models.retrieve("tt")


def test_prompt_tokens_are_the_prompt_length_alone_or_batched():
    """OpenAI's `usage.prompt_tokens` is the prompt's length, counted once; not the request's share of a batched
    prefill (one less, since the last prompt token is decoded, and split by size among batch mates)."""
    from _tiny import make_llama, make_tokenizer

    from testtime.engines import Request, TransformersEngine

    tok = make_tokenizer()
    engine = TransformersEngine(make_llama(tok), tokenizer=tok, seed=0)
    srv = ServerThread(create_app(engine, None, ServeConfig(model_name="tt", batch_window_ms=400, default_max_tokens=8))).start()
    short, long = ask("hi"), ask("Tom has 5 apples and buys 7 more. How many apples does he have? " * 3)
    want = [len(engine.encode(Request(messages=m))) for m in (short, long)]
    try:
        alone = [post(srv, {"model": "tt", "messages": m, "budget": 2}).json()["usage"]["prompt_tokens"] for m in (short, long)]
        batched = [r.json()["usage"]["prompt_tokens"] for r in concurrently(srv, [{"model": "tt", "messages": m, "budget": 2} for m in (short, long)])]
        assert srv.server.config.app.state.batcher.num_batches == 3  # two alone, then one batch of both
    finally:
        srv.stop()
    assert want[0] < want[1]
    assert alone == batched == want


def test_a_client_that_leaves_while_queued_frees_its_slot_and_is_never_solved():
    backend = Backend()
    srv = start(backend, max_concurrent_requests=2)
    try:
        first = threading.Thread(target=lambda: post(srv, {"model": "tt", "messages": ask("wait")}))
        first.start()
        wait_for(srv, lambda h: h["in_flight"] == 1)
        # The second client gives up while its request is queued behind the blocked worker.
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(srv.url + "/v1/chat/completions", json={"model": "tt", "messages": ask("impatient")}, headers={"Authorization": f"Bearer {KEY}"}, timeout=0.5)
        wait_for(srv, lambda h: h["in_flight"] == 1)  # its slot is free again at once, not when the worker gets to it
        third = {}
        t = threading.Thread(target=lambda: third.setdefault("r", post(srv, {"model": "tt", "messages": ask("patient")})))
        t.start()
        wait_for(srv, lambda h: h["in_flight"] == 2)  # admitted: no 429 although two requests were sent before it
        backend.gate.set()
        first.join()
        t.join()
        assert third["r"].status_code == 200 and third["r"].json()["testtime"]["answer"] == "5"
        asked = [request.messages[-1]["content"] for request, _ in backend.engine.calls]
        assert "impatient" not in asked and asked.count("patient") == 1
    finally:
        backend.gate.set()
        srv.stop()


def test_requests_still_running_when_the_shutdown_grace_ends_get_a_503_in_openai_format():
    backend = Backend()
    srv = ServerThread(create_app(backend.engine, None, ServeConfig(model_name="tt")), graceful_shutdown_s=0.3).start()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", httpx.post(srv.url + "/v1/chat/completions", json={"model": "tt", "messages": ask("wait")}, timeout=20)))
    t.start()
    wait_for(srv, lambda h: h["in_flight"] == 1)
    stopper = threading.Thread(target=srv.stop)  # what SIGTERM does: should_exit, then the grace period
    stopper.start()
    t.join(20)
    backend.gate.set()
    stopper.join()
    r = result["r"]
    assert r.status_code == 503 and r.headers["content-type"] == "application/json"
    assert r.json() == {
        "error": {
            "message": "the server shut down before this request finished (graceful-shutdown period over); send it again, to another server",
            "type": "server_error",
            "param": None,
            "code": "shutting_down",
        }
    }
