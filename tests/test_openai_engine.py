"""OpenAIEngine against loopback servers: a fake vLLM that injects 429s, 5xx, timeouts and dropped
connections, and `testtime serve` itself. Request mapping, retries, round-robin, continuation, accounting."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from _tiny import make_tokenizer

from testtime import EngineError, Request, SamplingParams, ScorerError, ValidationError
from testtime.engines import OpenAIEngine, ScriptedEngine
from testtime.engines._prompt import encode_request
from testtime.engines._sampling import derive_seed
from testtime.scorers import RemoteScorer, ScoreRequest
from testtime.serve import ServeConfig, ServerThread, create_app
from testtime.strategies import MajorityVote, SamplingStrategyParams
from testtime.tasks import Problem

# The fake servers answer by prompt, not by seed, so n > 1 gives identical completions on purpose here.
pytestmark = pytest.mark.filterwarnings("ignore:.*came back identical:RuntimeWarning")

STEPS = "Step 1: add.\n\nStep 2: carry.\n\nThe final answer is $\\boxed{12}$."


class FakeVLLM:
    """A loopback OpenAI-compatible server with vLLM's semantics (one token per character): `max_tokens`,
    stop strings with `include_stop_str_in_output` and `stop_reason`, `continue_final_message`, `usage`.

    `reply(key, partial, body)` gives the full continuation after `partial`, where key is the last user
    message (chat) or the prompt (completions). `faults[key]` lists what the first attempts for that key
    get: "429" (Retry-After 0.25), "500", "503", "drop" (connection closed, no response), "slow" (answers
    after the client's timeout), "400" (a rejected request).
    """

    def __init__(self, reply=None, *, faults: dict | None = None) -> None:
        self.reply = reply or (lambda key, partial, body: f"answer to {key}")
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.log: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = fake.key(body)
                with fake.lock:
                    fake.log.append((self.path, body))
                    queue = fake.faults.get(key) or []
                    fault = queue.pop(0) if queue else None
                try:
                    fake.respond(self, body, key, fault)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first ("slow")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @staticmethod
    def key(body: dict) -> str:
        if "input" in body:
            return "score"
        if "messages" in body:
            return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        return body["prompt"] if isinstance(body["prompt"], str) else "ids"

    @staticmethod
    def send(handler, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)

    def respond(self, handler, body: dict, key: str, fault: str | None) -> None:
        if fault == "drop":
            handler.close_connection = True
            return
        if fault == "slow":
            time.sleep(0.6)
        if fault in ("429", "500", "503", "400"):
            headers = {"Retry-After": "0.25"} if fault == "429" else {}
            message = {"400": "max_tokens is too large", "429": "slow down"}.get(fault, "engine hiccup")
            self.send(handler, int(fault), {"error": {"message": message, "type": "Error", "code": int(fault)}}, headers)
            return
        if handler.path not in ("/v1/chat/completions", "/v1/completions", "/pooling", "/classify"):
            self.send(handler, 404, {"detail": "Not Found"})
            return
        if "input" in body:
            self.send(handler, 200, self.pool(handler.path, body))
            return
        chat = "messages" in body
        partial = body["messages"][-1]["content"] if chat and body.get("continue_final_message") else ""
        full = self.reply(key, partial, body)
        text, finish, stop_reason, used = full[: body["max_tokens"]], "length", None, body["max_tokens"]
        if len(full) <= body["max_tokens"]:
            finish, used = "stop", len(full)
        hits = [(text.find(s), s) for s in body.get("stop", []) if s in text]
        if hits:
            at, stop = min(hits)
            used = at + len(stop)
            text = text[: used if body.get("include_stop_str_in_output") else at]
            finish, stop_reason = "stop", stop
        prompt_len = len(key) + len(partial) if chat else len(body["prompt"])
        choice = {"index": 0, "finish_reason": finish, "stop_reason": stop_reason}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
            if body.get("return_token_ids"):
                choice["token_ids"] = [1000 + i for i in range(used)]
        usage = {"prompt_tokens": prompt_len, "completion_tokens": used, "total_tokens": prompt_len + used}
        self.send(handler, 200, {"id": "x", "object": "chat.completion", "choices": [choice], "usage": usage})


    @staticmethod
    def pool(path: str, body: dict) -> dict:
        """vLLM's /pooling with a step pooler ([P(bad), P(good)] per step tag) or /classify (one vector per
        text); a step is good when it says "good"."""

        def p(step: str) -> float:
            return 0.875 if "good" in step else 0.25

        data = []
        for i, text in enumerate(body["input"]):
            body_text = text.split("<|im_start|>assistant\n")[-1]
            if path == "/pooling":
                steps = body_text.split("<extra_0>")[:-1]
                data.append({"index": i, "object": "pooling", "data": [[1 - p(s), p(s)] for s in steps]})
            else:
                data.append({"index": i, "label": "x", "probs": [1 - p(body_text.split("\n\n")[-1]), p(body_text.split("\n\n")[-1])], "num_classes": 2})
        return {"object": "list", "data": data[::-1], "usage": {"prompt_tokens": sum(len(t) for t in body["input"])}}


@pytest.fixture
def fake():
    servers = []

    def make(*args, **kwargs):
        servers.append(FakeVLLM(*args, **kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def msg(text: str) -> Request:
    return Request(messages=[{"role": "user", "content": text}])


def recording(engine: OpenAIEngine) -> list[float]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    engine.client.sleep = sleep
    return waits


def test_generate_maps_requests_responses_and_usage(fake):
    server = fake()
    with OpenAIEngine("m", base_url=server.url, seed=7) as eng:
        outs = eng.generate(
            [msg("q0"), msg("q1"), msg("q2")],
            [SamplingParams(n=2, max_tokens=40, seed=11), SamplingParams(max_tokens=5, temperature=0), SamplingParams(max_tokens=40, stop=["to"])],
        )
    assert [[c.text for c in o.completions] for o in outs] == [["answer to q0", "answer to q0"], ["answe"], ["answer "]]
    assert [[c.finish_reason for c in o.completions] for o in outs] == [["eos", "eos"], ["length"], ["stop"]]
    assert outs[2].completions[0].stop_reason == "to" and outs[2].completions[0].num_tokens == 9
    assert [c.num_tokens for c in outs[0].completions] == [12, 12] and [c.index for c in outs[0].completions] == [0, 1]
    assert [o.num_prompt_tokens for o in outs] == [2, 2, 2]
    assert eng.usage.num_generated_tokens == 12 + 12 + 5 + 9 and eng.usage.num_prefill_tokens == 4 * 2 and eng.usage.num_calls == 1
    bodies = [b for _, b in server.log]
    assert {p for p, _ in server.log} == {"/v1/chat/completions"}
    # n fans out: one request per completion, seeded derive_seed(seed, i), no `n` field.
    q0 = [b for b in bodies if b["messages"][0]["content"] == "q0"]
    assert sorted(b["seed"] for b in q0) == sorted(derive_seed(11, i) % 2**31 for i in range(2))
    assert all("n" not in b and b["model"] == "m" and b["max_tokens"] == 40 and b["temperature"] == 1.0 for b in q0)
    q2 = next(b for b in bodies if b["messages"][0]["content"] == "q2")
    assert q2["stop"] == ["to"] and "include_stop_str_in_output" not in q2 and "continue_final_message" not in q2


def test_faults_are_retried_nothing_lost_order_kept(fake):
    faults = {"q1": ["429"], "q3": ["500", "503"], "q5": ["drop"], "q7": ["slow"], "q8": ["drop", "429", "500"]}
    server = fake(faults=faults)
    eng = OpenAIEngine("m", base_url=server.url, timeout=0.3, backoff=0.01, max_retries=3, max_concurrency=4)
    waits = recording(eng)
    outs = eng.generate([msg(f"q{k}") for k in range(10)], SamplingParams(max_tokens=50))
    eng.close()
    assert [o.completions[0].text for o in outs] == [f"answer to q{k}" for k in range(10)]
    attempts = {}
    for _, b in server.log:
        attempts[b["messages"][0]["content"]] = attempts.get(b["messages"][0]["content"], 0) + 1
    assert attempts == {f"q{k}": 1 + len(faults.get(f"q{k}", [])) for k in range(10)}
    assert eng.client.num_retries == 8 and eng.client.num_requests == 18
    # Retry-After is honoured exactly; other waits are full-jitter draws within the doubling bound.
    assert sorted(waits).count(0.25) == 2 and len(waits) == 8
    assert all(0 <= w <= 0.01 * 2**2 for w in waits if w != 0.25)
    assert eng.usage.num_generated_tokens == sum(len(f"answer to q{k}") for k in range(10))  # failed attempts cost nothing


def test_retries_are_bounded_and_the_error_is_one_line(fake):
    server = fake(faults={"bad": ["500"] * 10})
    eng = OpenAIEngine("m", base_url=server.url, max_retries=2, backoff=0.0)
    with pytest.raises(EngineError) as info:
        eng.generate([msg("ok"), msg("bad")], SamplingParams(max_tokens=20))
    assert len([b for _, b in server.log if b["messages"][0]["content"] == "bad"]) == 3
    text = str(info.value)
    assert text.startswith("request 1: OpenAIEngine: POST /chat/completions failed 3 times (last: http://127.0.0.1:")
    assert "500 engine hiccup" in text and "raise `max_retries` / `timeout`" in text and "\n" not in text


def test_a_rejected_request_is_not_retried(fake):
    server = fake(faults={"q": ["400"]})
    eng = OpenAIEngine("m", base_url=server.url, backoff=0.0)
    with pytest.raises(EngineError, match=r"/chat/completions answered 400: max_tokens is too large \(a request the server rejects is not retried"):
        eng.generate(msg("q"), SamplingParams(max_tokens=20))
    assert len(server.log) == 1


def test_round_robin_over_a_fleet(fake):
    a, b = fake(), fake()
    eng = OpenAIEngine("m", base_url=f"{a.url}, {b.url}/", max_concurrency=3)
    outs = eng.generate([msg(f"q{k}") for k in range(4)], SamplingParams(n=2, max_tokens=30))
    assert [c.text for o in outs for c in o.completions] == [f"answer to q{k}" for k in range(4) for _ in range(2)]
    assert (len(a.log), len(b.log)) == (4, 4)
    # A dead server in the fleet costs a retry, not a failure.
    dead = "http://127.0.0.1:9/v1"  # the discard port: nothing listens on loopback
    eng = OpenAIEngine("m", base_url=[dead, a.url], backoff=0.0)
    outs = eng.generate([msg("x"), msg("y")], SamplingParams(max_tokens=30))
    assert [o.completions[0].text for o in outs] == ["answer to x", "answer to y"] and eng.client.num_retries == 1


def test_live_batch_continues_partial_answers_with_vllm_fields(fake):
    server = fake(reply=lambda key, partial, body: STEPS[len(partial) :])
    eng = OpenAIEngine("m", base_url=server.url)
    batch = eng.start(msg("q"), SamplingParams(n=2, max_tokens=200, seed=3))
    step = batch.advance(stop=["\n\n"])
    assert [(s.text, s.reason, s.num_tokens) for s in step] == [("Step 1: add.\n\n", "boundary", 14)] * 2
    batch.reorder([1])
    step = batch.advance(stop=["\n\n"])
    assert [(s.text, s.reason) for s in step] == [("Step 2: carry.\n\n", "boundary")]
    step = batch.advance(stop=["\n\n"])
    assert step[0].reason == "eos" and batch.completion(0).text == STEPS and batch.completion(0).num_tokens == len(STEPS)
    second = server.log[2][1]
    assert second["messages"][-1] == {"role": "assistant", "content": "Step 1: add.\n\n"}
    assert second["continue_final_message"] is True and second["add_generation_prompt"] is False
    assert second["include_stop_str_in_output"] is True and second["stop"] == ["\n\n"] and second["max_tokens"] == 200 - 14


def test_completions_endpoint_renders_the_template_here_and_sends_token_ids(fake):
    tok = make_tokenizer()
    server = fake(reply=lambda key, partial, body: "12 apples")
    eng = OpenAIEngine("m", base_url=server.url, endpoint="completions", tokenizer=tok)
    req = Request(messages=[{"role": "user", "content": "Tom has 5 apples"}], partial="Step 1:")
    out = eng.generate(req, SamplingParams(max_tokens=20))[0]
    path, body = server.log[0]
    prompt, partial = encode_request(tok, req)
    assert path == "/v1/completions" and body["prompt"] == prompt + partial and body["return_token_ids"] is True
    assert out.completions[0].text == "12 apples" and out.completions[0].token_ids == list(range(1000, 1009))
    assert out.num_prompt_tokens == len(prompt + partial)


@pytest.mark.parametrize(
    "kwargs, request_, params, match",
    [
        pytest.param({"vllm_extensions": False}, Request(messages=[{"role": "user", "content": "q"}], partial="So"), SamplingParams(), r"continuing a partial answer on the chat endpoint needs vLLM's `continue_final_message`", id="partial"),
        pytest.param({"vllm_extensions": False}, Request(messages=[{"role": "user", "content": "q"}]), SamplingParams(top_k=5), r"`top_k` needs vLLM's `top_k` request field", id="top_k"),
        pytest.param({"vllm_extensions": False}, Request(messages=[{"role": "user", "content": "q"}]), SamplingParams(stop=["\n\n"], include_stop_str_in_output=True), r"keeping stop strings in the output", id="include-stop"),
        pytest.param({}, Request(prompt="2+2="), SamplingParams(), r"a raw `prompt` request needs the completions endpoint", id="prompt-on-chat"),
        pytest.param({"endpoint": "completions"}, Request(messages=[{"role": "user", "content": "q"}]), SamplingParams(), r"need the model's chat template; pass `tokenizer=`", id="messages-no-tokenizer"),
    ],
)
def test_requests_a_server_cannot_honour_are_refused_before_sending(fake, kwargs, request_, params, match):
    server = fake()
    eng = OpenAIEngine("m", base_url=server.url, **kwargs)
    with pytest.raises(ValidationError, match=match):
        eng.generate(request_, params)
    assert server.log == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param({"base_url": "localhost:8000"}, r"`base_url` entries must start with http:// or https://, got 'localhost:8000'", id="scheme"),
        pytest.param({"endpoint": "responses"}, r"`endpoint` must be one of chat, completions, got 'responses'", id="endpoint"),
        pytest.param({"max_retries": -1}, r"`max_retries` must be a number >= 0, got -1", id="retries"),
        pytest.param({"max_concurrency": 0}, r"`max_concurrency` must be a number > 0, got 0", id="concurrency"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        OpenAIEngine("m", **kwargs)


def test_against_testtime_serve(fake):
    answers = {0: "5", 1: "3", 2: "5"}

    def handler(request, params, index):
        return f"Step 1.\n\nThe final answer is $\\boxed{{{answers[index % 3]}}}$."

    backend = ScriptedEngine(handler)
    app = create_app(backend, config=ServeConfig(model_name="tt", default_budget=1))
    with ServerThread(app) as server:
        eng = OpenAIEngine("tt", base_url=server.url + "/v1", extra_body={"strategy": "majority", "budget": 3})
        outs = eng.generate([msg("q0"), msg("q1")], SamplingParams(n=2, max_tokens=100, seed=1))
        # Test-time scaling behind the API: every completion is the majority answer of 3 candidates, and its
        # token count is what the service generated for it (all 3 candidates).
        want = handler(None, None, 0)
        assert [c.text for o in outs for c in o.completions] == [want] * 4
        assert [c.num_tokens for o in outs for c in o.completions] == [3 * len(want)] * 4
        assert eng.usage.num_generated_tokens == backend.usage.num_generated_tokens == 4 * 3 * len(want)
        # Strategies run unchanged on the remote engine, here on top of the service.
        res = MajorityVote(eng, params=SamplingStrategyParams(n=2)).solve(Problem(id="p", question="q", answer="5"))[0]
        assert res.answer == "5" and len(res.candidates) == 2 and res.usage.num_generated_tokens == 2 * 3 * len(want)
        eng.close()


def test_remote_prm_scores_every_step_in_batches_with_retries(fake):
    server = fake(faults={"score": ["503"]})
    root = server.url[: -len("/v1")]
    scorer = RemoteScorer("prm", base_url=root, batch_size=2, backoff=0.0)
    cands = ["good start\n\nbad turn\n\ngood end", "", "good", "bad\n\n"]
    out = scorer.score([ScoreRequest(question="Q?", candidates=cands), ScoreRequest(question="R?", candidates=["bad"])])
    assert out == [[[0.875, 0.25, 0.875], [], [0.875], [0.25]], [[0.25]]]
    posts = [b for path, b in server.log if path == "/pooling"]
    assert [len(b["input"]) for b in posts] == [2, 2, 2] and scorer.client.num_retries == 1  # 4 texts, one batch retried
    first = next(b["input"][0] for b in posts if "good start" in b["input"][0])
    assert posts[0]["model"] == "prm" and first.endswith(
        "<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\ngood start<extra_0>bad turn<extra_0>good end<extra_0><|im_end|>\n"
    )
    assert scorer.usage.num_calls == 1 and scorer.usage.num_tokens == sum(len(t) for b in posts[1:] for t in b["input"])
    classify = RemoteScorer("orm", base_url=root, endpoint="classify", per_step=True)
    assert classify.score(ScoreRequest(question="Q?", candidates=["good a\n\nbad b"])) == [[[0.875, 0.25]]]
    inputs = next(b["input"] for p, b in server.log if p == "/classify")
    assert [t.split("<|im_start|>assistant\n")[-1] for t in inputs] == ["good a<|im_end|>\n", "good a\n\nbad b<|im_end|>\n"]


def test_remote_prm_errors_say_what_to_fix(fake):
    server = fake()
    root = server.url[: -len("/v1")]
    with pytest.raises(ScorerError, match=r"returned 1 step scores for 2 steps; check that `step_tag` \('<step>'\) is the token"):
        RemoteScorer("prm", base_url=root, template="{question} {steps}", step_tag="<step>").score(ScoreRequest(question="q", candidates=["a<extra_0>b\n\nc"]))
    with pytest.raises(ScorerError, match=r"RemoteScorer: http://127.0.0.1:\d+/v1/pooling answered 404"):
        RemoteScorer("prm", base_url=server.url).score(ScoreRequest(question="q", candidates=["a"]))
    with pytest.raises(ValidationError, match=r"`endpoint` must be one of pooling, classify, got 'reward'"):
        RemoteScorer("prm", endpoint="reward")
