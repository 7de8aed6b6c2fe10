"""OpenAIEngine against servers that are not vLLM: one that decodes greedily unless told to sample and takes only
text prompts (as `transformers serve` does), one that answers with fields of the wrong type, one that hangs; the
eval CLI's flags for them (--extra-body, --prompt-format, --request-timeout, --max-retries) and the default
scorer on a remote engine."""

from __future__ import annotations

import json
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from _tiny import make_tokenizer

from testtime import EngineError, Request, SamplingParams
from testtime.cli import main
from testtime.engines import OpenAIEngine, ScriptedEngine
from testtime.engines.openai_engine import TRANSFORMERS_SERVE_SAMPLING
from testtime.engines.scripted import Scripted
from testtime.eval import ResultsFile
from testtime.serve import ServeConfig, ServerThread, create_app
from testtime.strategies import MajorityVote, SamplingStrategyParams
from testtime.tasks import Problem

CHAT_FIELDS = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "stream", "generation_config"}
COMPLETION_FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "stream", "generation_config"}


class Server:
    """A loopback server whose POST handler is `respond(path, body) -> (status, payload)`; it logs every body."""

    def __init__(self, respond) -> None:
        self.respond = respond
        self.log: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.log.append((self.path, body))
                status, payload = outer.respond(self.path, body)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up first

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def make(respond):
        servers.append(Server(respond))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def transformers_serve(path: str, body: dict):
    """`transformers serve`'s rules: unknown fields are a 422, a completions prompt must be a string, and it
    samples only when the request's generation config says do_sample (this model's own config says greedy)."""
    allowed = CHAT_FIELDS if path.endswith("/chat/completions") else COMPLETION_FIELDS
    unexpected = set(body) - allowed
    if unexpected:
        return 422, {"detail": f"Unexpected fields in the request: {sorted(unexpected)}"}
    if path.endswith("/completions") and not path.endswith("/chat/completions"):
        if not isinstance(body["prompt"], str):
            return 400, {"detail": "prompt must be a string."}
        prompt = body["prompt"]
    else:
        prompt = body["messages"][-1]["content"]
    sample = json.loads(body.get("generation_config") or "{}").get("do_sample", False) and body["temperature"] > 0
    digit = body["seed"] % 10 if sample else len(prompt) % 10
    text = f"Step 1: think it over.\n\nThe final answer is $\\boxed{{{digit}}}$."[: body["max_tokens"]]
    choice = {"index": 0, "finish_reason": "stop"}
    if path.endswith("/chat/completions"):
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return 200, {"id": "x", "choices": [choice], "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(text), "total_tokens": len(prompt) + len(text)}}


PROBLEM = Problem(id="p", question="What is 2+3?", answer="5")


def test_a_greedy_server_is_caught_and_extra_body_makes_it_sample(serve):
    server = serve(transformers_serve)
    greedy = OpenAIEngine("m", base_url=server.url)
    with pytest.warns(RuntimeWarning, match=r"all 4 completions of a request sampled at temperature 0.8 came back identical") as caught:
        res = MajorityVote(greedy, params=SamplingStrategyParams(n=4), sampling=SamplingParams(temperature=0.8, max_tokens=200)).solve(PROBLEM)[0]
    assert len({c.text for c in res.candidates}) == 1  # what the warning is about: a vote over 4 copies
    assert "extra_body={'generation_config': '{\"do_sample\": true}'}" in str(caught[0].message)
    sampling = OpenAIEngine("m", base_url=server.url, extra_body=TRANSFORMERS_SERVE_SAMPLING)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = MajorityVote(sampling, params=SamplingStrategyParams(n=4), sampling=SamplingParams(temperature=0.8, max_tokens=200)).solve(PROBLEM)[0]
    assert len({c.text for c in res.candidates}) == 3  # the seeds' last digits: 4 draws, one repeat
    assert all(b["generation_config"] == '{"do_sample": true}' for _, b in server.log[-4:])
    # Greedy on purpose (temperature 0) or short identical answers raise nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        greedy.generate(Request(messages=PROBLEM.chat()), SamplingParams(n=3, temperature=0.0, max_tokens=200))
        OpenAIEngine("m", base_url=server.url).generate(Request(messages=PROBLEM.chat()), SamplingParams(n=3, temperature=1.0, max_tokens=5))


def test_completions_send_text_to_a_server_that_refuses_token_ids(serve):
    server = serve(transformers_serve)
    tok = make_tokenizer()
    req = Request(messages=[{"role": "user", "content": "What is 2+3?"}])
    text = tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True)
    eng = OpenAIEngine("m", base_url=server.url, endpoint="completions", tokenizer=tok, max_retries=0)
    with pytest.warns(RuntimeWarning, match=r"refused a token-id prompt \(422: Unexpected fields in the request: \['return_token_ids'\]\); sending prompts as text"):
        out = eng.generate(req, SamplingParams(max_tokens=200, temperature=0.0))
    assert out[0].completions[0].text.endswith("$\\boxed{" + str(len(text) % 10) + "}$.")
    eng.generate([req, req], SamplingParams(max_tokens=200, temperature=0.0))
    prompts = [b["prompt"] for _, b in server.log]
    assert isinstance(prompts[0], list) and prompts[1:] == [text] * 3  # one refused try, then text for good
    # Without vLLM's extra fields the ids alone are refused the same way.
    server.log.clear()
    strict = OpenAIEngine("m", base_url=server.url, endpoint="completions", tokenizer=tok, vllm_extensions=False, max_retries=0)
    with pytest.warns(RuntimeWarning, match=r"\(400: prompt must be a string\.\)"):
        strict.generate(req, SamplingParams(max_tokens=200))
    assert [type(b["prompt"]) for _, b in server.log] == [list, str]
    # "text" never tries ids; "ids" never falls back.
    server.log.clear()
    OpenAIEngine("m", base_url=server.url, endpoint="completions", tokenizer=tok, prompt_format="text").generate(req, SamplingParams(max_tokens=200))
    assert [b["prompt"] for _, b in server.log] == [text] and "return_token_ids" not in server.log[0][1]
    with pytest.raises(EngineError, match=r"answered 400: prompt must be a string\."):
        OpenAIEngine("m", base_url=server.url, endpoint="completions", tokenizer=tok, prompt_format="ids", vllm_extensions=False, max_retries=0).generate(req, SamplingParams(max_tokens=200))


def ok_chat(**changes):
    """A chat response with `changes` applied at dotted paths ("usage.prompt_tokens")."""
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = body
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[last] = value
    return body


@pytest.mark.parametrize(
    "response, field, shown, want",
    [
        pytest.param(ok_chat(**{"usage.prompt_tokens": "3"}), "usage.prompt_tokens", '"3"', "an integer >= 0", id="prompt-tokens-string"),
        pytest.param(ok_chat(**{"usage.completion_tokens": "lots"}), "usage.completion_tokens", '"lots"', "an integer >= 0", id="completion-tokens-string"),
        pytest.param(ok_chat(**{"usage.completion_tokens": -1}), "usage.completion_tokens", "-1", "an integer >= 0", id="completion-tokens-negative"),
        pytest.param(ok_chat(usage=[3, 1]), "usage", "[3, 1]", "an object", id="usage-list"),
        pytest.param(ok_chat(**{"choices.0.message.content": ["hi"]}), "choices[0].message.content", '["hi"]', "a string", id="content-list"),
        pytest.param(ok_chat(**{"choices.0.message.content": 42}), "choices[0].message.content", "42", "a string", id="content-number"),
        pytest.param(ok_chat(**{"choices.0.message": "hi"}), "choices[0].message", '"hi"', "an object with `content`", id="message-string"),
        pytest.param(ok_chat(**{"choices.0.token_ids": ["a"]}), "choices[0].token_ids", '["a"]', "a list of token ids", id="token-ids"),
    ],
)
def test_a_response_with_fields_of_the_wrong_type_is_an_engine_error_naming_server_and_field(serve, response, field, shown, want):
    server = serve(lambda path, body: (200, response))
    with pytest.raises(EngineError) as info:
        OpenAIEngine("m", base_url=server.url).generate(Request(messages=PROBLEM.chat()), SamplingParams(max_tokens=10))
    assert str(info.value) == (
        f"request 0: OpenAIEngine: {server.url}/chat/completions answered with `{field}` = {shown}, not {want}; "
        "the server does not follow OpenAI's response format"
    )


def test_an_error_names_the_problem_not_the_request_index(serve):
    from testtime._errors import problem_context

    server = serve(lambda path, body: (400, {"error": {"message": "too long"}}) if "two" in body["messages"][-1]["content"] else transformers_serve(path, body))
    eng = OpenAIEngine("m", base_url=server.url)
    requests = [Request(messages=[{"role": "user", "content": q}]) for q in ("one", "two")]
    with pytest.raises(EngineError) as info, problem_context(["gsm8k-12", "gsm8k-13"]):
        eng.generate(requests, SamplingParams(max_tokens=10))
    assert str(info.value).startswith(f"problem gsm8k-13: OpenAIEngine: {server.url}/chat/completions answered 400: too long")


def test_cli_bounds_a_hung_server_with_request_timeout_and_max_retries(serve, tmp_path, capsys):
    def hang(path, body):
        time.sleep(3)
        return transformers_serve(path, body)

    server = serve(hang)
    argv = ["eval", "--task", "arith", "--limit", "1", "--strategy", "greedy", "--n", "1", "--engine", "openai", "--base-url", server.url, "--model", "m", "--no-progress"]
    assert main([*argv, "--request-timeout", "0.2", "--max-retries", "1", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"OpenAIEngine: POST /chat/completions failed 2 times (last: {server.url}: no answer within 0.2 s)" in err
    assert "(--max-retries / --request-timeout)" in err and len(server.log) == 2
    for bad, message in [(["--request-timeout", "0"], "--request-timeout takes a number of seconds > 0, got '0'"), (["--max-retries", "-1"], "--max-retries takes an integer >= 0, got '-1'")]:
        with pytest.raises(SystemExit):
            main([*argv, *bad])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--extra-body", "[1]"])
    assert "--extra-body takes a JSON object, got list '[1]'" in capsys.readouterr().err


def test_cli_extra_body_reaches_every_request_and_is_part_of_the_run(serve, tmp_path):
    server = serve(transformers_serve)
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {k}+{k}?", "answer": str(2 * k)}) + "\n" for k in range(3)))
    out = tmp_path / "run"
    argv = ["eval", "--task", "jsonl", "--data", str(data), "--strategy", "majority", "--n", "4", "--engine", "openai", "--base-url", server.url, "--model", "m", "--no-progress", "--out", str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sampling works, so no "identical" warning
        assert main([*argv, "--extra-body", json.dumps(TRANSFORMERS_SERVE_SAMPLING)]) == 0
    assert len(server.log) == 12 and all(b["generation_config"] == '{"do_sample": true}' for _, b in server.log)
    rows = ResultsFile(out / "results.jsonl").load()
    assert all(len({c["text"] for c in r["candidates"]}) > 1 for r in rows)
    backend = json.loads((out / "run.json").read_text())["identity"]["backend"]
    assert backend == {"engine": "openai", "endpoint": "chat", "extra_body": TRANSFORMERS_SERVE_SAMPLING}
    # Resuming without it would mix greedy rows into a sampled run: refused, naming the backend.
    assert main(argv) == 2


def confident(request, params, index):
    """Answers by seed; the tokens of answer d have logprob -d / 10 and top logprobs [-d / 10, -3, -4, ..., -8]."""
    d = params.seed % 10
    text = f"Step 1: count.\n\nThe final answer is $\\boxed{{{d}}}$."
    return Scripted(text, logprobs=[-d / 10] * len(text), top_logprobs=[[-d / 10, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0]] * len(text))


def test_the_default_scorer_on_a_remote_engine_is_confidence_from_the_servers_logprobs(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"problem": f"q{k}", "answer": "1"}) + "\n" for k in range(2)))
    out = tmp_path / "run"
    with ServerThread(create_app(ScriptedEngine(confident), None, ServeConfig(model_name="tt"))) as srv:
        argv = ["eval", "--task", "jsonl", "--data", str(data), "--strategy", "bon", "--n", "4", "--engine", "openai", "--base-url", srv.url + "/v1", "--model", "tt"]
        # One plain sample per request from the service (its own default would run majority over 4).
        assert main([*argv, "--extra-body", '{"strategy": "greedy"}', "--temperature", "0.8", "--no-progress", "--out", str(out)]) == 0
    capsys.readouterr()
    assert json.loads((out / "run.json").read_text())["identity"]["scorer"] == "confidence:mean"
    for row in ResultsFile(out / "results.jsonl").load():
        scores = [c["score"] for c in row["candidates"]]
        assert all(isinstance(s, float) for s in scores)
        # Mean token confidence is -mean(top-5 logprobs) = (d / 10 + 18) / 5 for answer d: the largest d wins
        # (the first of equals).
        best = min(range(4), key=lambda i: (-int(row["candidates"][i]["answer"]), i))
        assert scores[best] == pytest.approx((int(row["candidates"][best]["answer"]) / 10 + 18) / 5)
        assert row["by_n"]["4"]["selected"] == best
