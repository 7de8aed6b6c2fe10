"""Per-token logprobs on the remote backends and through `testtime serve`.

1. `OpenAIEngine` parses responses shaped as vLLM and OpenAI send them (recorded shapes below, as Python dicts):
   the chat and the legacy completions formats, vLLM's sampled-token-first top lists, its unordered top dicts
   and its end-of-sequence entry; malformed logprobs are one-line `EngineError`s naming the server and field.
2. `testtime serve` on a tiny random model returns the reply's logprobs in OpenAI's format (official client,
   JSON and streamed) equal to the in-process engine's for the same request and seed, and `OpenAIEngine`
   against it returns the in-process engine's `TokenLogprobs`.
3. A live batch continued in chunks through the service (vLLM's `continue_final_message`): greedy, it is the
   in-process engine's own one-shot generation, token for token, with a character-level tokenizer. With a
   byte-level BPE it cannot be in general, and sampled it never is: each chunk is a new request that sends
   the text so far, which the server re-tokenizes (a generated token sequence need not be the canonical
   tokenization of its text, and a byte token that ends mid-character decodes to U+FFFD, which does not
   encode back to that byte), and that draws from a new seeded stream (the in-process row keeps one stream
   for all its tokens). What is guaranteed, and tested, is that every chunk is exactly the in-process
   engine's continuation of the same text under the seed the wire maps the request to.
"""

from __future__ import annotations

import json
from dataclasses import replace

import openai
import pytest
from _tiny import CHATML, SPECIALS, make_llama, make_tokenizer

from testtime import EngineError, Request, RequestOutput, SamplingParams, TransformersEngine
from testtime.engines import ConfidenceStop, OpenAIEngine, ScriptedEngine, TextLiveBatch, token_confidence
from testtime.engines._sampling import derive_seed
from testtime.engines.scripted import Scripted
from testtime.scorers import ScriptedScorer
from testtime.serve import ServeConfig, ServerThread, create_app
from testtime.strategies import get_strategy, problem_seed
from testtime.tasks import Problem

URL = "http://gpu7:8000/v1"

# -- 1. recorded response shapes ---------------------------------------------------------------------------

# vLLM 0.8-style /v1/chat/completions with logprobs: true, top_logprobs: 3 (we asked for k = 2). Each
# top_logprobs list is the first 3 entries of vLLM's dict, which starts with the sampled token: at " =" the
# sampled token (rank 5) comes first and the list lacks the true 3rd; at "12" it is the top token. The last
# entry is the end-of-sequence token, counted in usage but not in the text.
VLLM_CHAT = {
    "id": "chatcmpl-5b0a7d3c8e2f4a1b9c6d",
    "object": "chat.completion",
    "created": 1733312000,
    "model": "Qwen/Qwen2.5-Math-1.5B-Instruct",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "reasoning_content": None, "content": "x = 12", "tool_calls": []},
            "logprobs": {
                "content": [
                    {"token": "x", "logprob": -0.25, "bytes": [120], "top_logprobs": [
                        {"token": "x", "logprob": -0.25, "bytes": [120]},
                        {"token": "The", "logprob": -1.75, "bytes": [84, 104, 101]},
                        {"token": "We", "logprob": -2.5, "bytes": [87, 101]},
                    ]},
                    {"token": " =", "logprob": -3.0, "bytes": [32, 61], "top_logprobs": [
                        {"token": " =", "logprob": -3.0, "bytes": [32, 61]},
                        {"token": " is", "logprob": -0.5, "bytes": [32, 105, 115]},
                        {"token": ":", "logprob": -1.25, "bytes": [58]},
                    ]},
                    {"token": " ", "logprob": -0.125, "bytes": [32], "top_logprobs": [
                        {"token": " ", "logprob": -0.125, "bytes": [32]},
                        {"token": " 1", "logprob": -2.25, "bytes": [32, 49]},
                        {"token": "  ", "logprob": -3.5, "bytes": [32, 32]},
                    ]},
                    {"token": "12", "logprob": -0.0625, "bytes": [49, 50], "top_logprobs": [
                        {"token": "12", "logprob": -0.0625, "bytes": [49, 50]},
                        {"token": "13", "logprob": -3.0, "bytes": [49, 51]},
                        {"token": "1", "logprob": -4.0, "bytes": [49]},
                    ]},
                    {"token": "<|im_end|>", "logprob": -0.015625, "bytes": [60, 124, 105, 109, 95, 101, 110, 100, 124, 62], "top_logprobs": [
                        {"token": "<|im_end|>", "logprob": -0.015625, "bytes": [60, 124, 105, 109, 95, 101, 110, 100, 124, 62]},
                        {"token": ".", "logprob": -4.5, "bytes": [46]},
                        {"token": "\n\n", "logprob": -5.0, "bytes": [10, 10]},
                    ]},
                ]
            },
            "finish_reason": "stop",
            "stop_reason": None,
        }
    ],
    "usage": {"prompt_tokens": 31, "total_tokens": 36, "completion_tokens": 5, "prompt_tokens_details": None},
    "prompt_logprobs": None,
    "kv_transfer_params": None,
}

# api.openai.com /v1/chat/completions (gpt-4o-mini) with logprobs: true, top_logprobs: 3: top lists are the
# proper top 3, descending; no end-of-sequence entry; usage here counts one token more than the entries.
OPENAI_CHAT = {
    "id": "chatcmpl-AaBbCcDdEeFfGg",
    "object": "chat.completion",
    "created": 1733312100,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Yes, 12.", "refusal": None},
            "logprobs": {
                "content": [
                    {"token": "Yes", "logprob": -0.0003, "bytes": [89, 101, 115], "top_logprobs": [
                        {"token": "Yes", "logprob": -0.0003, "bytes": [89, 101, 115]},
                        {"token": "No", "logprob": -8.25, "bytes": [78, 111]},
                        {"token": "yes", "logprob": -9.5, "bytes": [121, 101, 115]},
                    ]},
                    {"token": ",", "logprob": -0.5, "bytes": [44], "top_logprobs": [
                        {"token": ",", "logprob": -0.5, "bytes": [44]},
                        {"token": ".", "logprob": -1.0, "bytes": [46]},
                        {"token": "!", "logprob": -3.0, "bytes": [33]},
                    ]},
                    {"token": " 12", "logprob": -0.01, "bytes": [32, 49, 50], "top_logprobs": [
                        {"token": " 12", "logprob": -0.01, "bytes": [32, 49, 50]},
                        {"token": " twelve", "logprob": -4.75, "bytes": [32, 116, 119, 101, 108, 118, 101]},
                        {"token": " 13", "logprob": -6.0, "bytes": [32, 49, 51]},
                    ]},
                    {"token": ".", "logprob": -0.125, "bytes": [46], "top_logprobs": [
                        {"token": ".", "logprob": -0.125, "bytes": [46]},
                        {"token": "!", "logprob": -2.5, "bytes": [33]},
                        {"token": "<|end|>", "logprob": -3.0, "bytes": None},
                    ]},
                ],
                "refusal": None,
            },
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 14, "completion_tokens": 5, "total_tokens": 19, "completion_tokens_details": {"reasoning_tokens": 0}},
    "system_fingerprint": "fp_0ba0d124f1",
}

# vLLM /v1/completions with logprobs: 2: each top dict holds the sampled token first, then the top 2 (3 keys
# when the sampled token is not among them); JSON objects carry no order anyway. Ends by max_tokens.
VLLM_COMPLETIONS = {
    "id": "cmpl-2c9e41f7a8b34d0e",
    "object": "text_completion",
    "created": 1733312200,
    "model": "Qwen/Qwen2.5-Math-1.5B",
    "choices": [
        {
            "index": 0,
            "text": "2 + 2 = 4",
            "logprobs": {
                "text_offset": [0, 1, 3, 5, 7],
                "token_logprobs": [-0.5, -1.5, -0.25, -0.75, -2.0],
                "tokens": ["2", " +", " 2", " =", " 4"],
                "top_logprobs": [
                    {"2": -0.5, "1": -1.25},
                    {" +": -1.5, " *": -0.75, " -": -1.0},
                    {" 2": -0.25, " 3": -2.0},
                    {" ==": -3.0, " =": -0.75},
                    {" 4": -2.0, " 5": -0.25, " 3": -1.5},
                ],
            },
            "finish_reason": "length",
            "stop_reason": None,
            "prompt_logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 6, "total_tokens": 11, "completion_tokens": 5, "prompt_tokens_details": None},
    "kv_transfer_params": None,
}


def canned(engine: OpenAIEngine, response: dict) -> list[tuple[str, dict]]:
    """Answer every request with `response` (as `URL` would), recording (path, body)."""
    sent: list[tuple[str, dict]] = []

    async def post(path: str, body: dict, **kwargs):  # kwargs: the client's options (on_reject, ...)
        sent.append((path, body))
        return URL, json.loads(json.dumps(response))

    engine.client.post = post
    return sent


def same_rows(got: list[list[float]], want: list[list[float]], abs: float) -> bool:
    """Nested lists of equal shape whose values agree within `abs`."""
    return [len(r) for r in got] == [len(r) for r in want] and [v for r in got for v in r] == pytest.approx([v for r in want for v in r], abs=abs)


def msg(text: str = "q") -> Request:
    return Request(messages=[{"role": "user", "content": text}])


def test_vllm_chat_logprobs_top_k_sorted_and_the_eos_entry_dropped():
    eng = OpenAIEngine("m", base_url=URL)
    sent = canned(eng, VLLM_CHAT)
    c = eng.generate(msg(), SamplingParams(logprobs=2, seed=0))[0].completions[0]
    # One more than asked: vLLM's list starts with the sampled token, which may push out the k-th.
    assert sent[0][1]["logprobs"] is True and sent[0][1]["top_logprobs"] == 3
    lp = c.logprobs
    assert lp.tokens == ["x", " =", " ", "12"] and lp.logprobs == [-0.25, -3.0, -0.125, -0.0625]
    assert lp.top_logprobs == [[-0.25, -1.75], [-0.5, -1.25], [-0.125, -2.25], [-0.0625, -3.0]]
    assert lp.top_tokens == [["x", "The"], [" is", ":"], [" ", " 1"], ["12", "13"]]
    assert lp.kl_from_uniform is None
    # EOS: out of the tokens, counted in usage, its logprob kept in the completion's sum.
    assert (c.finish_reason, c.num_tokens, c.text) == ("eos", 4, "x = 12")
    assert c.cumulative_logprob == -0.25 - 3.0 - 0.125 - 0.0625 - 0.015625
    assert eng.usage.num_generated_tokens == 5 and eng.usage.num_prefill_tokens == 31


def test_openai_chat_logprobs_k_zero_and_a_usage_count_above_the_entries():
    eng = OpenAIEngine("gpt-4o-mini", base_url=URL, vllm_extensions=False)
    sent = canned(eng, OPENAI_CHAT)
    c = eng.generate(msg(), SamplingParams(logprobs=0, seed=0))[0].completions[0]
    assert sent[0][1]["top_logprobs"] == 0
    assert c.logprobs.logprobs == [-0.0003, -0.5, -0.01, -0.125] and c.logprobs.top_logprobs == [[]] * 4
    assert c.logprobs.tokens == ["Yes", ",", " 12", "."]
    assert (c.finish_reason, c.num_tokens) == ("eos", 4)  # "." is text, not an EOS entry
    assert eng.usage.num_generated_tokens == 5  # what the server counted
    three = eng.generate(msg(), SamplingParams(logprobs=3, seed=0))[0].completions[0]
    assert sent[1][1]["top_logprobs"] == 4
    assert three.logprobs.top_tokens[3] == [".", "!", "<|end|>"] and three.logprobs.top_logprobs[1] == [-0.5, -1.0, -3.0]


def test_vllm_completions_logprobs_unordered_dicts_and_k_zero():
    eng = OpenAIEngine("m", base_url=URL, endpoint="completions")
    sent = canned(eng, VLLM_COMPLETIONS)
    c = eng.generate(Request(prompt="2 + 2 ="), SamplingParams(logprobs=2, max_tokens=5, seed=0))[0].completions[0]
    assert sent[0][1]["logprobs"] == 2 and sent[0][1]["prompt"] == "2 + 2 ="
    assert c.logprobs.tokens == ["2", " +", " 2", " =", " 4"] and c.logprobs.logprobs == [-0.5, -1.5, -0.25, -0.75, -2.0]
    assert c.logprobs.top_logprobs == [[-0.5, -1.25], [-0.75, -1.0], [-0.25, -2.0], [-0.75, -3.0], [-0.25, -1.5]]
    assert c.logprobs.top_tokens == [["2", "1"], [" *", " -"], [" 2", " 3"], [" =", " =="], [" 5", " 3"]]
    assert (c.finish_reason, c.num_tokens, c.cumulative_logprob) == ("length", 5, -5.0)
    # k = 0 still asks for 1 (some servers read logprobs: 0 as "off") and keeps no top entries.
    zero = eng.generate(Request(prompt="2 + 2 ="), SamplingParams(logprobs=0, max_tokens=5))[0].completions[0]
    assert sent[1][1]["logprobs"] == 1 and zero.logprobs.top_logprobs == [[]] * 5 and zero.logprobs.logprobs == c.logprobs.logprobs


def test_without_per_token_logprobs_the_request_and_completion_are_as_before():
    eng = OpenAIEngine("m", base_url=URL, logprobs=True)
    sent = canned(eng, VLLM_CHAT)
    c = eng.generate(msg(), SamplingParams(seed=0))[0].completions[0]
    assert sent[0][1]["logprobs"] is True and "top_logprobs" not in sent[0][1]
    assert c.logprobs is None and c.num_tokens == 5 and c.cumulative_logprob == pytest.approx(-3.453125)


def eos_variant(last_token: str) -> dict:
    data = json.loads(json.dumps(VLLM_CHAT))
    data["choices"][0]["logprobs"]["content"][-1]["token"] = last_token
    return data


@pytest.mark.parametrize(
    "last, tokenizer, dropped",
    [
        pytest.param("<|im_end|>", None, True, id="special-not-in-text"),
        pytest.param("<|im_end|>", "tiny", True, id="tokenizer-eos"),
        # A real special token before EOS: only the tokenizer tells it from EOS.
        pytest.param("<|im_start|>", None, True, id="special-guess"),
        pytest.param("<|im_start|>", "tiny", False, id="tokenizer-not-eos"),
        pytest.param("12", None, False, id="text-token"),
    ],
)
def test_which_last_entry_counts_as_end_of_sequence(last, tokenizer, dropped):
    eng = OpenAIEngine("m", base_url=URL, tokenizer=make_tokenizer() if tokenizer else None)
    canned(eng, eos_variant(last))
    c = eng.generate(msg(), SamplingParams(logprobs=1))[0].completions[0]
    assert c.num_tokens == len(c.logprobs) == (4 if dropped else 5)
    assert c.logprobs.tokens[-1] == ("12" if dropped else last)


def broken(base: dict, path: str, value) -> dict:
    """`base` with the field at `path` (dots and [i]) set to `value` (`...` deletes it)."""
    data = json.loads(json.dumps(base))
    keys = [int(k) if k.isdigit() else k for k in path.replace("[", ".").replace("]", "").split(".")]
    node = data
    for k in keys[:-1]:
        node = node[k]
    if value is ...:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data


CHAT_LP = "choices[0].logprobs"


@pytest.mark.parametrize(
    "endpoint, response, match",
    [
        pytest.param("chat", broken(VLLM_CHAT, CHAT_LP, None), r"`choices\[0\]\.logprobs\.content` is missing", id="chat-none"),
        pytest.param("chat", broken(VLLM_CHAT, CHAT_LP + ".content", {"x": 1}), r"`choices\[0\]\.logprobs\.content` is a dict, not a list", id="chat-type"),
        pytest.param("chat", broken(VLLM_CHAT, CHAT_LP + ".content[1].logprob", "-3.0"), r"`choices\[0\]\.logprobs\.content\[1\]\.logprob` is '-3\.0', not a number", id="chat-string-logprob"),
        pytest.param("chat", broken(VLLM_CHAT, CHAT_LP + ".content[2].token", 7), r"`choices\[0\]\.logprobs\.content\[2\]\.token` is not a string", id="chat-token"),
        pytest.param("chat", broken(VLLM_CHAT, CHAT_LP + ".content[0].top_logprobs[1].logprob", None), r"`choices\[0\]\.logprobs\.content\[0\]\.top_logprobs\[1\]\.logprob` is 'None', not a number", id="chat-top"),
        pytest.param("chat", broken(VLLM_CHAT, CHAT_LP + ".content[3].top_logprobs", ...), r"`choices\[0\]\.logprobs\.content\[3\]\.top_logprobs` is 'None', not a list", id="chat-no-top"),
        pytest.param("chat", broken(VLLM_CHAT, "usage.completion_tokens", 3), r"`usage\.completion_tokens` is 3 for 4 logprob entries", id="chat-count"),
        pytest.param("completions", broken(VLLM_COMPLETIONS, CHAT_LP, None), r"`choices\[0\]\.logprobs` is missing", id="completions-none"),
        pytest.param("completions", broken(VLLM_COMPLETIONS, CHAT_LP + ".top_logprobs", VLLM_COMPLETIONS["choices"][0]["logprobs"]["top_logprobs"][:4]), r"`choices\[0\]\.logprobs` has 5 tokens, 5 token_logprobs and 4 top_logprobs", id="completions-columns"),
        pytest.param("completions", broken(VLLM_COMPLETIONS, CHAT_LP + ".token_logprobs[0]", None), r"`choices\[0\]\.logprobs\.token_logprobs\[0\]` is 'None', not a number", id="completions-null"),
        pytest.param("completions", broken(VLLM_COMPLETIONS, CHAT_LP + ".top_logprobs[2]", [[" 2", -0.25]]), r"`choices\[0\]\.logprobs\.top_logprobs\[2\]` is .* not an object", id="completions-top-type"),
        pytest.param("completions", broken(VLLM_COMPLETIONS, "choices[0].token_ids", [11, 12, 13]), r"`choices\[0\]\.token_ids` holds 3 ids for 5 logprob entries", id="completions-ids"),
    ],
)
def test_malformed_logprobs_are_one_line_engine_errors(endpoint, response, match):
    eng = OpenAIEngine("m", base_url=URL, endpoint=endpoint)
    canned(eng, response)
    req = msg() if endpoint == "chat" else Request(prompt="2 + 2 =")
    with pytest.raises(EngineError, match=match) as info:
        eng.generate(req, SamplingParams(logprobs=2, max_tokens=5))
    path = "/chat/completions" if endpoint == "chat" else "/completions"
    assert str(info.value).startswith(f"request 0: OpenAIEngine: {URL}{path} answered with malformed logprobs: `")
    assert "\n" not in str(info.value)


def test_a_live_batch_accumulates_remote_logprobs_across_continuations():
    eng = OpenAIEngine("m", base_url=URL)
    sent = canned(eng, broken(VLLM_CHAT, "choices[0].finish_reason", "length"))  # every chunk: 5 tokens, "length"
    batch = eng.start(msg(), SamplingParams(logprobs=2, max_tokens=10, seed=1))
    steps = [batch.advance(5)[0], batch.advance(5)[0]]
    assert [(s.reason, s.num_tokens) for s in steps] == [("limit", 5), ("length", 5)]
    c = batch.completion(0)
    assert len(c.logprobs) == c.num_tokens == 10 and c.logprobs.tokens == ["x", " =", " ", "12", "<|im_end|>"] * 2
    assert sent[1][1]["messages"][-1] == {"role": "assistant", "content": "x = 12"} and sent[1][1]["continue_final_message"] is True


# -- 2. testtime serve on a tiny model -------------------------------------------------------------------

QUESTION = [{"role": "user", "content": "Tom has 5 apples"}]


def char_tokenizer():
    """Printable ASCII, one token per character, no merges: every text re-encodes to the ids that wrote it."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(SPECIALS + chars)}, merges=[], unk_token="<|endoftext|>"))
    tok.add_special_tokens(SPECIALS)
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.chat_template = CHATML
    return fast


class Tiny:
    """A served tiny model and an identical in-process reference (separate weights objects: the service's
    engine lives on its worker thread)."""

    def __init__(self, tokenizer, *, seed: int = 0) -> None:
        self.tok = tokenizer
        self.ref = TransformersEngine(make_llama(tokenizer, seed=seed), tokenizer=tokenizer, seed=0)
        self.served = TransformersEngine(make_llama(tokenizer, seed=seed), tokenizer=tokenizer, seed=0)
        self.server = ServerThread(create_app(self.served, config=ServeConfig(model_name="tiny", default_budget=1))).start()
        self.url = self.server.url + "/v1"

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key="none", max_retries=0, timeout=60)

    def engine(self, **kwargs) -> OpenAIEngine:
        return OpenAIEngine("tiny", base_url=self.url, extra_body={"strategy": "majority", "budget": 1}, **kwargs)


@pytest.fixture(scope="module")
def bpe():
    tiny = Tiny(make_tokenizer())
    yield tiny
    tiny.server.stop()


def served_seed(seed: int) -> int:
    """The engine seed `testtime serve` uses for a request with `seed` (problem id "seed-<seed>", strategy seed 0)."""
    return problem_seed(0, f"seed-{seed}")


def test_openai_client_gets_the_in_process_logprobs_json_and_streamed(bpe):
    params = SamplingParams(temperature=1.0, max_tokens=24, logprobs=3)
    want = bpe.ref.generate(Request(messages=QUESTION), replace(params, seed=served_seed(11)))[0].completions[0]
    kwargs = dict(model="tiny", messages=QUESTION, temperature=1.0, max_tokens=24, seed=11, logprobs=True, top_logprobs=3)
    r = bpe.client().chat.completions.create(**kwargs)
    chunks = list(bpe.client().chat.completions.create(**kwargs, stream=True))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    for content in (r.choices[0].logprobs.content, streamed):
        assert [e.logprob for e in content] == pytest.approx(want.logprobs.logprobs, abs=1e-6)
        assert same_rows([[t.logprob for t in e.top_logprobs] for e in content], want.logprobs.top_logprobs, abs=1e-6)
        assert [e.token for e in content] == [bpe.tok.decode([i]) for i in want.token_ids]
        assert [[t.token for t in e.top_logprobs] for e in content] == [[bpe.tok.decode([i]) for i in top] for top in want.logprobs.top_tokens]
        assert [e.bytes for e in content] == [list(bpe.tok.decode([i]).encode()) for i in want.token_ids]
    assert r.choices[0].message.content == want.text and len(r.choices[0].logprobs.content) == len(want.token_ids) == r.usage.completion_tokens
    plain = bpe.client().chat.completions.create(model="tiny", messages=QUESTION, max_tokens=4, seed=11)
    assert plain.choices[0].logprobs is None


def test_openai_engine_through_serve_returns_the_in_process_token_logprobs(bpe):
    eng = bpe.engine(tokenizer=bpe.tok)
    p = SamplingParams(temperature=0.9, max_tokens=30, seed=21, logprobs=4)
    got = eng.generate(Request(messages=QUESTION), p)[0].completions[0]
    # OpenAIEngine seeds completion 0 with derive_seed(seed, 0) (31 bits); the service maps that to its own.
    want = bpe.ref.generate(Request(messages=QUESTION), replace(p, seed=served_seed(derive_seed(21, 0) % 2**31)))[0].completions[0]
    assert got.logprobs.logprobs == pytest.approx(want.logprobs.logprobs, abs=1e-6)
    assert same_rows(got.logprobs.top_logprobs, want.logprobs.top_logprobs, abs=1e-6)
    assert got.logprobs.tokens == [bpe.tok.decode([i]) for i in want.token_ids]
    assert got.logprobs.top_tokens == [[bpe.tok.decode([i]) for i in top] for top in want.logprobs.top_tokens]
    assert (got.text, got.num_tokens, got.finish_reason) == (want.text, len(want.token_ids), want.finish_reason)
    assert got.cumulative_logprob == pytest.approx(sum(want.logprobs.logprobs), abs=1e-5)
    eng.close()


# -- 3. continuation through the service -----------------------------------------------------------------


@pytest.mark.parametrize("model_seed, want_finish", [pytest.param(0, "length", id="length"), pytest.param(1, "eos", id="eos")])
def test_greedy_chunks_through_serve_are_the_one_shot_generation(model_seed, want_finish):
    tiny = Tiny(char_tokenizer(), seed=model_seed)
    try:
        one = tiny.ref.generate(Request(messages=QUESTION), SamplingParams(temperature=0.0, max_tokens=40, logprobs=3))[0].completions[0]
        assert tiny.tok(one.text, add_special_tokens=False).input_ids == one.token_ids  # the guarantee's premise
        eng = tiny.engine(tokenizer=tiny.tok)
        batch = eng.start(Request(messages=QUESTION), SamplingParams(temperature=0.0, max_tokens=40, seed=9, logprobs=3))
        sizes = []
        while not batch.is_finished(0):
            sizes.append(batch.advance(7)[0].num_tokens)
        c = batch.completion(0)
        assert (c.text, c.finish_reason, c.num_tokens) == (one.text, want_finish, len(one.token_ids))
        assert sizes == ([7] * 5 + [5] if want_finish == "length" else [len(one.token_ids)])
        assert c.logprobs.tokens == [tiny.tok.decode([i]) for i in one.token_ids]
        # Re-sent prefixes are prefilled, not decoded one by one: the same math up to float rounding.
        assert c.logprobs.logprobs == pytest.approx(one.logprobs.logprobs, abs=1e-4)
        assert same_rows(c.logprobs.top_logprobs, one.logprobs.top_logprobs, abs=1e-4)
        eng.close()
    finally:
        tiny.server.stop()


class Wire:
    """An engine as `OpenAIEngine` sees it through `testtime serve`: a request's n completions are n requests;
    completion j of a request seeded s is the served engine's completion 0 seeded problem_seed(0, "seed-<s'>"),
    s' = derive_seed(s, j) mod 2**31 (the client's fan-out, then the service's per-request problem seed); and
    only text comes back (no token ids), so a live batch continues from text. Strategies and live batches over
    it are what they must be over the service."""

    def __init__(self, engine) -> None:
        self.engine, self.usage = engine, engine.usage

    def generate(self, requests, params=None, *, use_tqdm: bool = False):
        requests = [requests] if isinstance(requests, Request) else list(requests)
        params = params if isinstance(params, list) else [params] * len(requests)
        one = [(r, replace(p, n=1, seed=served_seed(derive_seed(p.seed, j) % 2**31))) for r, p in zip(requests, params, strict=True) for j in range(p.n)]
        done = iter(o.completions[0] for o in self.engine.generate([r for r, _ in one], [p for _, p in one]))
        outputs = [RequestOutput(completions=[replace(next(done), index=j) for j in range(p.n)]) for p in params]
        for c in (c for o in outputs for c in o.completions):
            c.num_generated_tokens, c.token_ids = c.num_tokens, []
        return outputs

    def start(self, requests=(), params=None) -> TextLiveBatch:
        return TextLiveBatch(self, requests, params)


def test_sampled_chunks_through_serve_are_the_in_process_continuations(bpe):
    """Two rows; row 0 is watched by a confidence stop (checked per chunk of 6 tokens), row 1 is not."""
    p = SamplingParams(temperature=1.0, max_tokens=40, seed=4, logprobs=3)
    reqs = [Request(messages=QUESTION), Request(messages=[{"role": "user", "content": "What is 6 * 7? Step 1: compute"}])]
    # Where row 0's confidence drops: the same chunks without the stop (a chunk's seed depends on where it starts).
    probe = TextLiveBatch(Wire(bpe.ref), reqs[:1], p)
    probe.advance(10)
    while not probe.is_finished(0):
        probe.advance(6)
    confs = [token_confidence(top) for top in probe.completion(0).logprobs.top_logprobs]
    means = [sum(confs[i - 3 : i + 1]) / 4 for i in range(10, len(confs))]  # windows ending at tokens 10, 11, ...
    ranked = sorted(means)
    threshold = (ranked[len(ranked) // 2] + ranked[len(ranked) // 2 + 1]) / 2
    drop = next(i for i, m in enumerate(means) if m < threshold)  # tokens into the watched advance, minus 1
    steps = {}
    remote = bpe.engine(tokenizer=bpe.tok).start(reqs, p)
    local = TextLiveBatch(Wire(bpe.ref), reqs, p)
    for name, batch in (("remote", remote), ("local", local)):
        batch.confidence_chunk = 6
        first = batch.advance(10)
        watched = batch.advance(confidence_stop=ConfidenceStop([threshold, None], window=4))
        steps[name] = [[(s.reason, s.num_tokens, s.text) for s in step] for step in (first, watched, batch.advance(5))]
    assert steps["remote"] == steps["local"]
    assert steps["local"][1][0][:2] == ("confidence", 6 * (drop // 6 + 1))  # the rest of the drop's chunk ran
    for r in range(2):
        a, b = remote.completion(r), local.completion(r)
        assert (a.text, a.num_tokens, a.finish_reason) == (b.text, b.num_tokens, b.finish_reason)
        # The service may batch the two rows' requests differently: equal up to float rounding.
        assert a.logprobs.logprobs == pytest.approx(b.logprobs.logprobs, abs=1e-4)
        assert a.logprobs.tokens == [bpe.tok.decode([t]) for t in b.logprobs.tokens]


# -- strategies through OpenAIEngine -> testtime serve ----------------------------------------------------

def scripted(request, params, index):
    """Answers 5 or 7 by seed; sure steps (peaked top logprobs), then, for two seeds in three, unsure ones."""
    answer = "5" if params.seed % 2 else "7"
    full = f"Step 1: add 2 and 3.\n\nStep 2: check it again.\n\nThe final answer is $\\boxed{{{answer}}}$."
    done, unsure = len(request.partial), full.index("check") if params.seed % 3 else len(full)
    tops = [[-0.05, -4.0, -5.0] if t < unsure else [-0.5, -1.0, -1.5] for t in range(done, len(full))]
    return Scripted(full[done:], logprobs=[top[0] for top in tops], top_logprobs=tops)


@pytest.mark.parametrize("name", ["beam", "deepconf-online"])
def test_step_level_and_early_stopping_strategies_run_against_serve(name):
    """The same strategy over `OpenAIEngine` -> `testtime serve` -> a scripted model, and over that model behind
    `Wire`: the same candidates, answers, token counts and engine requests."""
    backend = ScriptedEngine(scripted)
    server = ServerThread(create_app(backend, config=ServeConfig(model_name="tt"))).start()
    try:
        remote = OpenAIEngine("tt", base_url=server.url + "/v1", extra_body={"strategy": "majority", "budget": 1})
        local = Wire(ScriptedEngine(scripted))
        cls = get_strategy(name)
        scorer = ScriptedScorer(lambda q, steps: [0.9 if "{7}" in steps[-1] else 0.5] * len(steps))
        sampling = SamplingParams(temperature=0.8, max_tokens=200, logprobs=3 if name != "beam" else None)
        results = []
        for eng in (remote, local):
            strategy = cls(eng, scorer if cls.needs_scorer else None, sampling=sampling).at_budget(8)
            results.append(strategy.solve([Problem(id="q", question="What is 2 + 3?", answer="5")])[0])
        a, b = results
        assert (a.answer, a.selected, a.usage.num_generated_tokens, a.details) == (b.answer, b.selected, b.usage.num_generated_tokens, b.details)
        assert [(c.text, c.finish_reason, c.num_tokens) for c in a.candidates] == [(c.text, c.finish_reason, c.num_tokens) for c in b.candidates]
        assert sorted((r.partial, p.max_tokens, p.seed) for r, p in backend.calls) == sorted((r.partial, p.max_tokens, p.seed) for r, p in local.engine.calls)
        # Partial answers were continued through the service (beam: step by step; DeepConf: in chunks).
        assert sum(bool(r.partial) for r, _ in backend.calls) >= 8
        if name == "deepconf-online":
            assert a.details["stopped_low_confidence"] == 3 and [c.finish_reason for c in a.candidates].count(None) == 3
            assert all(len(c.logprobs) == c.num_tokens for c in a.candidates if c.logprobs is not None)
        remote.close()
    finally:
        server.stop()


@pytest.mark.parametrize("spec, scorer", [("deepconf", None), ("deepconf-online:warmup=2:window=4:check_every=8", None), ("adaptive:wave=2", None), ("spr", "confidence:logprob")])
def test_confidence_strategies_on_the_tiny_model_through_serve(bpe, spec, scorer):
    """Every early-stopping strategy, and SpR with the likelihood reward, through `OpenAIEngine` -> `testtime
    serve` -> the tiny model: the same candidates, answers and token counts as over the in-process model seen
    through the wire (`Wire`)."""
    from testtime.scorers import load_scorer
    from testtime.strategies import SpeculativeRejectionParams, make_strategy

    problem = Problem(id="q", question="Tom has 5 apples", answer="5")
    sampling = SamplingParams(temperature=1.0, max_tokens=24)
    results = []
    for eng in (bpe.engine(), Wire(bpe.ref)):
        s = make_strategy(spec, eng, load_scorer(scorer) if scorer else None, n=6, sampling=sampling, seed=3)
        if spec == "spr":
            s.params = SpeculativeRejectionParams(n=6, alpha=0.5, decision_tokens=[6, 12])
        results.append(s.solve(problem)[0])
    a, b = results
    assert [(c.text, c.num_tokens, c.finish_reason) for c in a.candidates] == [(c.text, c.num_tokens, c.finish_reason) for c in b.candidates]
    assert (a.selected, a.answer, a.usage.num_generated_tokens) == (b.selected, b.answer, b.usage.num_generated_tokens)
    if not spec.startswith("adaptive"):  # adaptive votes on answers and asks for no logprobs
        assert all(c.logprobs is not None and len(c.logprobs) == c.num_tokens for c in a.candidates if c.num_tokens)
