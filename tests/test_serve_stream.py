"""Token streaming in `testtime serve`: a single-sample reply (greedy, budget 1, a continuation) is sent while it
decodes on the scheduler, in several content chunks whose concatenation is exactly the non-streamed reply, stop
strings included; a request that fails before any text still gets its 4xx; multi-candidate replies come whole."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from _tiny import make_llama, make_tokenizer

from testtime.engines import TransformersEngine
from testtime.serve import ServeConfig, ServerThread, create_app
from testtime.serve._batcher import streams_tokens


@pytest.fixture(scope="module")
def server():
    tok = make_tokenizer()
    engine = TransformersEngine(make_llama(tok), tokenizer=tok, seed=0)
    srv = ServerThread(create_app(engine, None, ServeConfig(model_name="tt", default_max_tokens=48, max_message_chars=100_000, max_body_bytes=1_000_000))).start()
    yield srv
    srv.stop()


def ask(text: str = "Tom has 5 apples and buys 7 more. How many?"):
    return [{"role": "user", "content": text}]


def streamed(srv, body: dict) -> tuple[list[str], dict]:
    """The content pieces of a streamed reply, and its last chunk that has choices."""
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=30)
    chunks = list(client.chat.completions.create(model="tt", stream=True, **body))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    return pieces, [c for c in chunks if c.choices][-1].model_dump()


def whole(srv, body: dict) -> dict:
    return httpx.post(srv.url + "/v1/chat/completions", json={"model": "tt", **body}, timeout=30).json()


def test_a_greedy_reply_streams_in_pieces_that_add_up_to_the_reply(server):
    body = {"messages": ask(), "extra_body": {"strategy": "greedy"}, "max_tokens": 40}
    pieces, last = streamed(server, body)
    reply = whole(server, {"messages": ask(), "strategy": "greedy", "max_tokens": 40})["choices"][0]
    assert "".join(pieces) == reply["message"]["content"] and len(reply["message"]["content"]) > 20
    assert len(pieces) >= 4  # sent as it decoded (every 4 tokens), not as one piece at the end
    assert last["choices"][0]["finish_reason"] == reply["finish_reason"]


def test_a_stop_string_is_never_streamed_and_the_pieces_equal_the_trimmed_reply(server):
    """The stop string straddles a text update (after 4k tokens): its first characters reach the server before
    it is matched, and must not reach the client."""
    def text_after(k: int) -> str:  # what the server holds after k decoded tokens
        return whole(server, {"messages": ask(), "strategy": "greedy", "max_tokens": k})["choices"][0]["message"]["content"]

    full = text_after(40)
    for k in range(8, 36, 4):
        cut = len(text_after(k))
        stop = full[cut - 2 : cut + 2]
        if len(stop.strip()) == 4 and full.find(stop) == cut - 2:
            break
    else:
        pytest.fail("no stop string straddles a text update")
    for include in (False, True):
        extra = {"strategy": "greedy", "include_stop_str_in_output": include}
        pieces, last = streamed(server, {"messages": ask(), "max_tokens": 40, "stop": [stop], "extra_body": extra})
        reply = whole(server, {"messages": ask(), "max_tokens": 40, "stop": [stop], **extra})["choices"][0]
        assert "".join(pieces) == reply["message"]["content"] == full[: cut - 2] + (stop if include else "")
        assert last["choices"][0]["finish_reason"] == "stop" and last["choices"][0]["stop_reason"] == stop
        assert len(pieces) >= 2


def test_budget_one_of_a_sampling_strategy_streams_and_a_vote_comes_whole(server):
    pieces, _ = streamed(server, {"messages": ask(), "max_tokens": 40, "seed": 7, "extra_body": {"strategy": "majority", "budget": 1}})
    one = whole(server, {"messages": ask(), "max_tokens": 40, "seed": 7, "strategy": "majority", "budget": 1})
    assert len(pieces) >= 4 and "".join(pieces) == one["choices"][0]["message"]["content"]
    pieces, _ = streamed(server, {"messages": ask(), "max_tokens": 40, "seed": 7, "extra_body": {"strategy": "majority", "budget": 3}})
    assert len(pieces) <= 1  # three candidates: the chosen one is known only at the end


def test_a_streamed_request_that_fails_before_any_text_gets_its_4xx(server):
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "tt", "messages": ask("apples " * 3000), "strategy": "greedy", "stream": True}, timeout=30)
    assert r.status_code == 400 and "context" in r.json()["error"]["message"]
    assert json.loads(httpx.get(server.url + "/health").text)["in_flight"] == 0


def test_which_requests_stream_tokens():
    assert streams_tokens("greedy", 4, None) and streams_tokens("majority", 1, None) and streams_tokens("deepconf:keep=0.9", 1, None)
    assert streams_tokens("beam", 4, "a partial answer")  # a continuation is one sample whatever the strategy
    assert not streams_tokens("majority", 2, None) and not streams_tokens("beam", 1, None) and not streams_tokens("deepconf-online", 1, None)


def test_a_client_that_leaves_mid_stream_frees_its_slot(server):
    body = {"model": "tt", "messages": ask(), "strategy": "greedy", "max_tokens": 200, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        next(r.iter_lines())  # the role chunk: the reply is decoding
    for _ in range(100):
        if httpx.get(server.url + "/health").json()["in_flight"] == 0:
            break
        time.sleep(0.05)
    assert httpx.get(server.url + "/health").json()["in_flight"] == 0
