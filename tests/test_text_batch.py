"""TextLiveBatch: the live-batch operations over text continuation, on a scripted engine."""

from __future__ import annotations

import pytest

from testtime import ValidationError
from testtime.engines import Request, SamplingParams, ScriptedEngine

STEPS = ["Step 1: a.\n\n", "Step 2: bb.\n\n", "Step 3: ccc.\n\n", "Answer: 7"]
FULL = "".join(STEPS)


def stepper(request, params, index):
    """Continues the fixed solution from wherever the partial answer left off."""
    assert FULL.startswith(request.partial)
    return FULL[len(request.partial) :]


def test_advance_to_boundaries_then_finish():
    eng = ScriptedEngine(stepper)
    batch = eng.start(Request(messages=[{"role": "user", "content": "q"}]), SamplingParams(n=2, max_tokens=100, seed=3))
    first = batch.advance(stop=["\n\n"])
    assert [(s.text, s.reason, s.num_tokens) for s in first] == [(STEPS[0], "boundary", len(STEPS[0]))] * 2
    second = batch.advance(stop=["\n\n"])
    assert second[0].text == STEPS[1] and batch.completion(0).text == STEPS[0] + STEPS[1]
    # The engine was asked to continue from the text so far, with the step stop added to the request's own.
    req, params = eng.calls[-1]
    assert req.partial == STEPS[0] and params.stop == ["\n\n"] and params.include_stop_str_in_output
    batch.advance(stop=["\n\n"])
    last = batch.advance(stop=["\n\n"])
    assert last[0].reason == "eos" and batch.completion(0).text == FULL and batch.is_finished(0)
    again = batch.advance(stop=["\n\n"])
    assert [s.num_tokens for s in again] == [0, 0] and again[0].reason == "eos"


def test_request_stop_string_finishes_and_is_trimmed():
    eng = ScriptedEngine(stepper)
    batch = eng.start(Request(prompt="q"), SamplingParams(max_tokens=100, stop=["Step 3"]))
    out = batch.advance(stop=["\n\n"])
    assert out[0].reason == "boundary"
    batch.advance(stop=["\n\n"])
    out = batch.advance(stop=["\n\n"])
    assert out[0].reason == "stop" and batch.is_finished(0)
    assert batch.completion(0).text == STEPS[0] + STEPS[1] and batch.completion(0).stop_reason == "Step 3"


def test_token_limits():
    eng = ScriptedEngine(stepper)
    batch = eng.start(Request(prompt="q"), SamplingParams(max_tokens=20))
    out = batch.advance(5)
    assert out[0].reason == "limit" and out[0].num_tokens == 5 and out[0].text == FULL[:5]
    out = batch.advance()
    assert out[0].reason == "length" and batch.completion(0).num_tokens == 20 and batch.completion(0).text == FULL[:20]


def test_reorder_forks_with_fresh_seeds_and_counts_prefill_each_advance():
    seeds = []

    def record(request, params, index):
        seeds.append(params.seed)
        return stepper(request, params, index)

    eng = ScriptedEngine(record)
    batch = eng.start(Request(prompt="q"), SamplingParams(max_tokens=100, seed=1))
    batch.advance(stop=["\n\n"])
    prefill_after_one = eng.usage.num_prefill_tokens
    batch.reorder([0, 0, 0])
    assert batch.request_indices == [0, 0, 0]
    batch.advance(stop=["\n\n"])
    assert len(set(seeds[1:])) == 3  # each duplicate continues with its own seed
    # Text engines re-send the prefix: prompt + the first step, for each of the three rows.
    assert eng.usage.num_prefill_tokens - prefill_after_one == 3 * (1 + len(STEPS[0]))
    with pytest.raises(ValidationError, match="reorder got row 3"):
        batch.reorder([3])
