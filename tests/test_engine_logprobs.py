"""Per-token logprobs and the confidence stop: the in-process engine against a teacher-forced forward of the
same tiny model, and the text live batch against scripted logprobs."""

from __future__ import annotations

import math

import pytest
import torch
from _tiny import make_llama, make_tokenizer

from testtime import Request, SamplingParams, TransformersEngine, ValidationError
from testtime.engines import ConfidenceStop, ScriptedEngine, token_confidence
from testtime.engines.scripted import Scripted

MSGS = [
    [{"role": "user", "content": "Tom has 5 apples"}],
    [{"role": "user", "content": "What is 6 * 7? Step 1: compute"}],
]


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def engine(tok):
    # init 0.05: flat-ish distributions, so sampled tokens are often not the argmax and top-k differs by row
    return TransformersEngine(make_llama(tok, init=0.05), tokenizer=tok, seed=0)


def teacher_forced_logprobs(engine, request: Request, token_ids: list[int]) -> torch.Tensor:
    """log-softmax (T, V) of the HF forward at each generated position."""
    prompt = engine.encode(request)
    ids = torch.tensor([prompt + token_ids])
    with torch.inference_mode():
        logits = engine.model(input_ids=ids).logits[0].float()
    return torch.log_softmax(logits[len(prompt) - 1 : len(prompt) - 1 + len(token_ids)], -1)


def test_logprobs_match_a_teacher_forced_forward(engine):
    req = Request(messages=MSGS[0])
    out = engine.generate(req, SamplingParams(n=2, temperature=1.0, max_tokens=12, logprobs=5, seed=3, ignore_eos=True))[0]
    for c in out.completions:
        lp = c.logprobs
        assert len(lp) == len(c.token_ids) == 12
        ref = teacher_forced_logprobs(engine, req, c.token_ids)  # (T, V)
        want = ref.gather(1, torch.tensor(c.token_ids)[:, None])[:, 0]
        assert lp.logprobs == pytest.approx(want.tolist(), abs=1e-4)
        vals, ids = ref.topk(5, -1)
        assert [v for row in lp.top_logprobs for v in row] == pytest.approx(vals.flatten().tolist(), abs=1e-4)
        assert lp.top_tokens == ids.tolist()
        # KL(uniform || p) = -log V - mean_j log p_j, exact over the whole vocabulary.
        kl = -math.log(ref.shape[1]) - ref.mean(-1)
        assert lp.kl_from_uniform == pytest.approx(kl.tolist(), abs=1e-4)
        assert c.cumulative_logprob == pytest.approx(sum(lp.logprobs), abs=1e-3)


def test_logprobs_are_off_unless_asked_and_zero_gives_the_sampled_token_only(engine):
    req = Request(messages=MSGS[1])
    off = engine.generate(req, SamplingParams(temperature=1.0, max_tokens=6, seed=1, ignore_eos=True))[0].completions[0]
    zero = engine.generate(req, SamplingParams(temperature=1.0, max_tokens=6, seed=1, ignore_eos=True, logprobs=0))[0].completions[0]
    assert off.logprobs is None
    assert zero.token_ids == off.token_ids  # asking for logprobs does not change what is sampled
    assert len(zero.logprobs.logprobs) == 6 and zero.logprobs.top_logprobs == [[]] * 6


def test_rows_with_different_k_in_one_batch(engine):
    reqs = [Request(messages=m) for m in MSGS]
    outs = engine.generate(reqs, [SamplingParams(max_tokens=5, seed=0, ignore_eos=True, logprobs=k) for k in (2, 7)])
    assert [len(t) for t in outs[0].completions[0].logprobs.top_logprobs] == [2] * 5
    assert [len(t) for t in outs[1].completions[0].logprobs.top_logprobs] == [7] * 5


@pytest.mark.parametrize("sampling", [pytest.param(1.0, id="sampled"), pytest.param(0.0, id="greedy")])
def test_confidence_stop_pauses_each_row_at_its_first_low_window(engine, sampling):
    """The same seeded rows, with and without the stop: a watched row pauses exactly at the first token whose
    last-`window` mean token confidence is below its threshold; an unwatched row runs on."""
    p = SamplingParams(n=3, temperature=sampling, max_tokens=30, seed=5, ignore_eos=True, logprobs=4)
    free = engine.start(Request(messages=MSGS[0]), p)
    free.advance()
    confs = [[token_confidence(t) for t in free.completion(r).logprobs.top_logprobs] for r in range(3)]
    window = 4
    means = [[sum(c[i - window + 1 : i + 1]) / window for i in range(window - 1, len(c))] for c in confs]
    # Thresholds halfway between two window means (no float ties), so rows 0 and 1 drop at different places;
    # row 2 unwatched.
    s0, s1 = sorted(means[0]), sorted(means[1])
    t0 = (s0[len(s0) // 2] + s0[len(s0) // 2 + 1]) / 2
    t1 = (s1[2] + s1[3]) / 2
    expect = [next(i + window for i, m in enumerate(ms) if m < t) for ms, t in zip(means[:2], (t0, t1))]
    batch = engine.start(Request(messages=MSGS[0]), p)
    steps = batch.advance(confidence_stop=ConfidenceStop([t0, t1, None], window=window))
    assert [s.reason for s in steps] == ["confidence", "confidence", "length"]
    assert [s.num_tokens for s in steps] == [*expect, 30]
    assert batch.completion(0).token_ids == free.completion(0).token_ids[: expect[0]]
    assert engine.usage.num_generated_tokens > 0


def test_confidence_window_spans_advances(engine):
    """Tokens generated by an earlier advance fill the window: a threshold above every window stops the row at
    the first token of the next advance."""
    p = SamplingParams(temperature=1.0, max_tokens=30, seed=2, ignore_eos=True, logprobs=3)
    batch = engine.start(Request(messages=MSGS[1]), p)
    batch.advance(6)
    steps = batch.advance(confidence_stop=ConfidenceStop([1e9], window=5))
    assert steps[0].reason == "confidence" and steps[0].num_tokens == 1


@pytest.mark.parametrize(
    "stop, params, match",
    [
        pytest.param(ConfidenceStop([1.0, 1.0]), SamplingParams(logprobs=2, max_tokens=8), "2 thresholds for a batch of 1", id="count"),
        pytest.param(ConfidenceStop([1.0]), SamplingParams(logprobs=0, max_tokens=8), "logprobs=0", id="no-top-logprobs"),
        pytest.param(ConfidenceStop([1.0]), SamplingParams(max_tokens=8), "logprobs=None", id="no-logprobs"),
    ],
)
def test_confidence_stop_bad_input(engine, stop, params, match):
    batch = engine.start(Request(messages=MSGS[0]), params)
    with pytest.raises(ValidationError, match=match):
        batch.advance(3, confidence_stop=stop)


def test_bad_logprobs_values():
    for bad in (-1, 21, 1.5, True):
        with pytest.raises(ValidationError, match="`logprobs` must be None or an integer in"):
            SamplingParams(logprobs=bad)


# -- text live batch (remote engines): chunked continuation ------------------------------------------------


def test_text_batch_confidence_stop_is_checked_per_chunk_and_counts_every_token():
    confs = [
        [5.0] * 10 + [1.0] * 30,  # drops at token index 13 (window 4: tokens 10..13 at 1.0, mean 1.0 < 2)
        [5.0] * 40,  # never drops, runs to the end
    ]

    def handler(request, params, index):
        row = confs[0] if "first" in request.messages[0]["content"] else confs[1]
        done = len(request.partial)
        rest = row[done:]
        return Scripted(text="x" * len(rest), logprobs=[-c for c in rest], top_logprobs=[[-c, -c] for c in rest])

    eng = ScriptedEngine(handler)
    p = SamplingParams(max_tokens=40, logprobs=2, seed=0)
    batch = eng.start([Request(messages=[{"role": "user", "content": w}]) for w in ("first", "second")], p)
    batch.confidence_chunk = 5
    steps = batch.advance(confidence_stop=ConfidenceStop([2.0, 2.0], window=4))
    # Row 0 drops at token index 13 (tokens 10-13: mean 1.0 < 2; the window 9-12 averages exactly 2.0, not below),
    # but its chunk (indices 10-14) was generated: 15 tokens, all counted.
    assert [s.reason for s in steps] == ["confidence", "eos"]
    assert [s.num_tokens for s in steps] == [15, 40]
    assert batch.completion(0).logprobs.logprobs == [-c for c in confs[0][:15]]
    assert eng.usage.num_generated_tokens == 55
    # Requests were chunks of 5 for the watched rows: 3 for row 0, 8 + the closing one for row 1.
    assert [p.max_tokens for _, p in eng.calls][:2] == [5, 5]


def test_text_batch_refuses_a_server_without_logprobs():
    from testtime import EngineError

    class NoLogprobs(ScriptedEngine):
        def generate(self, requests, params=None, *, use_tqdm=False):
            outs = super().generate(requests, params)
            for o in outs:
                for c in o.completions:
                    c.logprobs = None
            return outs

    eng = NoLogprobs(lambda r, p, i: "abc")
    batch = eng.start(Request(messages=MSGS[0]), SamplingParams(logprobs=1))
    with pytest.raises(EngineError, match="asked for logprobs and returned none"):
        batch.advance()
