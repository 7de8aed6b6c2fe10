"""VLLMEngine's mapping to and from vLLM's API, with a fake `vllm` module injected through sys.modules.

vLLM needs a GPU, so these tests check what we send (`LLM(...)` arguments, token-id prompts, `SamplingParams`
fields) and how we read `RequestOutput`/`CompletionOutput` back; they do not run a real vLLM.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest
from _tiny import make_tokenizer

from testtime import EngineError, MissingDependencyError, Request, SamplingParams
from testtime.engines import VLLMEngine
from testtime.engines._prompt import encode_request
from testtime.engines._sampling import derive_seed
from testtime.strategies import MajorityVote, SamplingStrategyParams
from testtime.tasks import Problem


@dataclass
class FakeCompletionOutput:  # the fields of vllm.outputs.CompletionOutput we read
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: object = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class FakeRequestOutput:
    prompt_token_ids: list[int]
    outputs: list[FakeCompletionOutput]
    num_cached_tokens: int | None = None
    request_id: str = "0"
    finished: bool = True


class FakeSamplingParams:
    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs


class FakeLLM:
    """Records constructor arguments and generate calls; `reply(prompt_ids, params) -> CompletionOutput` answers;
    `FakeLLM.last` is the latest instance."""

    reply = None
    last = None

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        self.calls: list[tuple[list, list, bool]] = []
        self.tokenizer = make_tokenizer()
        FakeLLM.last = self

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append((prompts, sampling_params, use_tqdm))
        return [
            FakeRequestOutput(prompt_token_ids=p["prompt_token_ids"], outputs=[FakeLLM.reply(p["prompt_token_ids"], sp.kwargs)], num_cached_tokens=2)
            for p, sp in zip(prompts, sampling_params, strict=True)
        ]


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def answer(prompt_ids, sp) -> FakeCompletionOutput:
    """Plays vLLM with one token per character of "The answer is 12.\\n\\nDone." after the prompt."""
    text = "The answer is 12.\n\nDone."
    stop = sp["stop"] or []
    hits = [(text.find(s), s) for s in stop if s in text]
    finish, reason, end = "stop", None, len(text)
    if hits:
        at, s = min(hits)
        end, reason = at + len(s), s
    if end > sp["max_tokens"]:
        end, finish, reason = sp["max_tokens"], "length", None
    out = text[:end] if reason is None or sp["include_stop_str_in_output"] else text[: end - len(reason)]
    return FakeCompletionOutput(index=0, text=out, token_ids=list(range(500, 500 + end)), cumulative_logprob=-0.5 * end, finish_reason=finish, stop_reason=reason)


MSG = Request(messages=[{"role": "user", "content": "Tom has 5 apples"}])


def test_missing_vllm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"VLLMEngine needs `vllm`, which is not installed; run `pip install 'testtime\[vllm\]'`"):
        VLLMEngine("Qwen/Qwen2.5-Math-1.5B-Instruct")


def test_llm_gets_prefix_caching_and_tensor_parallelism(fake_vllm):
    VLLMEngine("some/model", tensor_parallel_size=4, seed=3, max_model_len=4096, llm_kwargs={"enforce_eager": True})
    assert FakeLLM.last.kwargs == {
        "model": "some/model",
        "tensor_parallel_size": 4,
        "enable_prefix_caching": True,
        "gpu_memory_utilization": 0.9,
        "dtype": "auto",
        "seed": 3,
        "max_model_len": 4096,
        "enforce_eager": True,
    }


def test_generate_sends_token_ids_and_maps_sampling_params(fake_vllm):
    FakeLLM.reply = staticmethod(answer)
    eng = VLLMEngine("m")
    tok = FakeLLM.last.tokenizer
    partial = Request(messages=MSG.messages, partial="Step 1:", partial_token_ids=[7, 8, 9])
    outs = eng.generate([MSG, partial], [SamplingParams(n=2, max_tokens=100, seed=5, top_k=0), SamplingParams(max_tokens=8, top_k=40, stop=["\n\n"])])
    prompts, params, use_tqdm = FakeLLM.last.calls[0]
    prompt, _ = encode_request(tok, MSG)
    # One vLLM request per completion; a partial answer continues from its exact token ids.
    assert [p["prompt_token_ids"] for p in prompts] == [prompt, prompt, prompt + [7, 8, 9]] and use_tqdm is False
    assert [p.kwargs["seed"] for p in params[:2]] == [derive_seed(5, 0), derive_seed(5, 1)]
    assert params[0].kwargs == {
        "n": 1,
        "max_tokens": 100,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": -1,
        "seed": derive_seed(5, 0),
        "stop": None,
        "include_stop_str_in_output": False,
        "ignore_eos": False,
        "logprobs": 0,
    }
    assert params[2].kwargs["top_k"] == 40 and params[2].kwargs["stop"] == ["\n\n"] and params[2].kwargs["max_tokens"] == 8
    a, b = outs
    assert [c.text for c in a.completions] == ["The answer is 12.\n\nDone."] * 2 and [c.index for c in a.completions] == [0, 1]
    assert a.completions[0].finish_reason == "eos" and a.completions[0].cumulative_logprob == -12.0 and a.completions[0].num_tokens == 24
    assert b.completions[0].text == "The answ" and b.completions[0].finish_reason == "length"
    assert a.num_prompt_tokens == len(prompt) and b.num_prompt_tokens == len(prompt) + 3
    # Prefill counts what the prefix cache did not serve (the fake reports 2 cached tokens per request).
    assert eng.usage.num_prefill_tokens == 3 * len(prompt) + 3 - 3 * 2
    assert eng.usage.num_generated_tokens == 24 + 24 + 8 and eng.usage.num_calls == 1


@pytest.mark.parametrize(
    "finish, stop_reason, want",
    [
        pytest.param("stop", None, ("eos", None), id="eos"),
        pytest.param("stop", 128001, ("eos", None), id="stop-token-id"),
        pytest.param("stop", "\n\n", ("stop", "\n\n"), id="stop-string"),
        pytest.param("length", None, ("length", None), id="length"),
    ],
)
def test_finish_reasons(fake_vllm, finish, stop_reason, want):
    FakeLLM.reply = staticmethod(lambda ids, sp: FakeCompletionOutput(0, "x", [1], None, finish_reason=finish, stop_reason=stop_reason))
    c = VLLMEngine("m").generate(MSG, SamplingParams(stop=["\n\n"]))[0].completions[0]
    assert (c.finish_reason, c.stop_reason) == want


def test_an_aborted_request_is_an_engine_error(fake_vllm):
    FakeLLM.reply = staticmethod(lambda ids, sp: FakeCompletionOutput(0, "x", [1], None, finish_reason="abort"))
    with pytest.raises(EngineError, match=r"vLLM ended a completion with finish_reason 'abort'; expected 'stop' or 'length'"):
        VLLMEngine("m").generate(MSG)


def test_live_batch_advances_all_rows_in_one_generate_call(fake_vllm):
    FakeLLM.reply = staticmethod(answer)
    eng = VLLMEngine("m")
    batch = eng.start([MSG, MSG], SamplingParams(n=2, max_tokens=100, seed=1))
    steps = batch.advance(stop=["\n\n"])
    assert [(s.text, s.reason) for s in steps] == [("The answer is 12.\n\n", "boundary")] * 4
    prompts, params, _ = FakeLLM.last.calls[-1]
    assert len(FakeLLM.last.calls) == 1 and len(prompts) == 4
    assert all(p.kwargs["include_stop_str_in_output"] and p.kwargs["stop"] == ["\n\n"] for p in params)
    batch.reorder([0, 0])
    batch.advance(stop=["\n\n"])
    prompts, _, _ = FakeLLM.last.calls[-1]
    # Rows continue from their own generated token ids (exact), appended to the rendered prompt.
    prompt, _ = encode_request(FakeLLM.last.tokenizer, MSG)
    assert [p["prompt_token_ids"] for p in prompts] == [prompt + list(range(500, 519))] * 2


def test_strategies_run_on_it(fake_vllm):
    FakeLLM.reply = staticmethod(answer)
    res = MajorityVote(VLLMEngine("m"), params=SamplingStrategyParams(n=3)).solve(Problem(id="p", question="q", answer="12", last_number_fallback=True))[0]
    assert res.answer == "12" and len(res.candidates) == 3 and res.usage.num_generated_tokens == 3 * 24


@dataclass
class FakeLogprob:  # vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


def with_logprobs(eos: int):
    """Plays vLLM with logprobs=2: per position a dict that starts with the sampled token, then the top 2 by
    rank (3 entries when the sampled token is not among them); the completion ends with EOS, whose id vLLM
    keeps in `token_ids` and whose entry it keeps in `logprobs`."""
    L = FakeLogprob
    positions = [
        {500: L(-0.5, 1, "x"), 600: L(-1.5, 2, "y")},
        {501: L(-4.0, 7, " ="), 610: L(-0.25, 1, " is"), 611: L(-1.0, 2, ":")},  # sampled outside the top 2
        {502: L(-1.0, 3, " 1"), 620: L(-0.5, 1, " 2"), 621: L(-1.0, 2, " 3")},  # ties the 2nd; rank breaks it
        {eos: L(-0.125, 1, "<|im_end|>"), 630: L(-3.0, 2, ".")},
    ]

    def reply(ids, sp):
        k = sp["logprobs"]
        trimmed = None if k is None else [{t: d[t], **{i: lp for i, lp in sorted(d.items(), key=lambda e: e[1].rank) if lp.rank <= k}} for t, d in zip([500, 501, 502, eos], positions, strict=True)]
        return FakeCompletionOutput(0, "x = 1", [500, 501, 502, eos], -5.625, logprobs=trimmed, finish_reason="stop", stop_reason=None)

    return reply


def test_logprobs_map_to_token_logprobs_and_the_eos_position_is_left_out(fake_vllm):
    eng = VLLMEngine("m", logprobs=False)
    eos = FakeLLM.last.tokenizer.eos_token_id
    FakeLLM.reply = staticmethod(with_logprobs(eos))
    c = eng.generate(MSG, SamplingParams(logprobs=2, seed=1))[0].completions[0]
    assert FakeLLM.last.calls[-1][1][0].kwargs["logprobs"] == 2
    lp = c.logprobs
    assert lp.tokens == [500, 501, 502] and lp.logprobs == [-0.5, -4.0, -1.0]
    assert lp.top_logprobs == [[-0.5, -1.5], [-0.25, -1.0], [-0.5, -1.0]] and lp.top_tokens == [[500, 600], [610, 611], [620, 621]]
    assert (c.token_ids, c.num_tokens, c.finish_reason, c.cumulative_logprob) == ([500, 501, 502], 3, "eos", -5.625)
    assert eng.usage.num_generated_tokens == 4  # the EOS token was generated
    zero = eng.generate(MSG, SamplingParams(logprobs=0))[0].completions[0]
    assert FakeLLM.last.calls[-1][1][0].kwargs["logprobs"] == 0
    assert zero.logprobs.logprobs == [-0.5, -4.0, -1.0] and zero.logprobs.top_logprobs == [[], [], []]
    plain = eng.generate(MSG, SamplingParams())[0].completions[0]
    assert FakeLLM.last.calls[-1][1][0].kwargs["logprobs"] is None and plain.logprobs is None


def test_a_stop_token_id_is_left_out_like_eos_and_missing_logprobs_are_an_engine_error(fake_vllm):
    eng = VLLMEngine("m")
    FakeLLM.reply = staticmethod(lambda ids, sp: FakeCompletionOutput(0, "ok", [7, 128009], -1.0, logprobs=[{7: FakeLogprob(-0.5, 1)}, {128009: FakeLogprob(-0.5, 1)}], finish_reason="stop", stop_reason=128009))
    c = eng.generate(MSG, SamplingParams(logprobs=1))[0].completions[0]
    assert (c.token_ids, c.logprobs.tokens, c.finish_reason) == ([7], [7], "eos")
    FakeLLM.reply = staticmethod(lambda ids, sp: FakeCompletionOutput(0, "ok", [7, 8], -1.0, logprobs=None, finish_reason="length"))
    with pytest.raises(EngineError, match=r"vLLM returned no logprobs for a completion of 2 tokens \(asked for logprobs=1\)"):
        eng.generate(MSG, SamplingParams(logprobs=1))
