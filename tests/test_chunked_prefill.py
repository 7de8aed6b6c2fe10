"""Chunked prefill: a long prompt computed a slice of columns at a time, decode steps of the running rows in
between (serve's scheduler), on a tiny random-weight Llama."""

from __future__ import annotations

import pytest
import torch
from _tiny import make_llama, make_tokenizer

from testtime import Request, SamplingParams, TransformersEngine
from testtime.engines._sessions import PendingPrefill
from testtime.scheduler import Cancelled, Scheduler

SHORT = "Tom has 5 apples"
LONG = "Step 1: add the numbers. Step 2: multiply 3 by 4 to get 12. The answer is 42, let us check: 6 * 7 = 42. " * 2


@pytest.fixture(scope="module")
def engine():
    # No prefix cache: these tests compare slices with whole passes of the same prompts (tests/test_prefix_cache.py
    # covers the two together).
    tok = make_tokenizer()
    return TransformersEngine(make_llama(tok), tokenizer=tok, seed=0, prefix_cache_tokens=0)


def ask(q: str) -> Request:
    return Request(messages=[{"role": "user", "content": q}])


def test_a_prefill_in_slices_caches_what_one_pass_does(engine):
    """Three prompts of different lengths (so slices cut through left padding), prefilled 7 tokens at a time:
    the cache holds the keys and values of one whole pass, and greedy decoding continues identically."""
    reqs = [ask(SHORT), ask(LONG), ask("hello world")]
    params = [SamplingParams(temperature=0.0, max_tokens=12)] * 3
    whole, sliced = engine.start(), engine.start()
    encoded = whole.encode(reqs, params)
    whole.add(reqs, params, encoded=encoded)
    pending = sliced.start_prefill(encoded)
    slices = 0
    while not pending.done:
        pending.step(7)
        slices += 1
    assert slices > 3 and pending.num_tokens_left == 0
    sliced.add(reqs, params, encoded=encoded, prefilled=pending)
    a, b = whole.session.cache, sliced.session.cache
    assert (a.col, a.num_rows) == (b.col, b.num_rows)
    assert torch.equal(a.valid[:3, : a.col], b.valid[:3, : b.col])
    assert torch.allclose(a.k[:, :3, :, : a.col], b.k[:, :3, :, : b.col], rtol=1e-4, atol=1e-4)
    assert torch.allclose(a.v[:, :3, :, : a.col], b.v[:, :3, :, : b.col], rtol=1e-4, atol=1e-4)
    assert whole.session.num_prefilled == sliced.session.num_prefilled == sum(len(ids) - 1 for ids in encoded)
    assert [o.text for o in whole.advance(12)] == [o.text for o in sliced.advance(12)]


def test_an_unfinished_prefill_is_refused(engine):
    batch = engine.start()
    params = SamplingParams(max_tokens=20)
    encoded = batch.encode([ask(LONG)], [params])
    pending = batch.start_prefill(encoded)
    pending.step(5)
    with pytest.raises(ValueError, match="finished prefill"):
        batch.add([ask(LONG)], params, encoded=encoded, prefilled=pending)
    assert len(batch) == 0


def program(question: str, n: int, tokens: int):
    def body(eng, _scorer):
        batch = eng.start(ask(question), SamplingParams(n=n, temperature=1.0, max_tokens=tokens, seed=11, ignore_eos=True))
        batch.advance(tokens)
        return [batch.completion(i).text for i in range(n)]

    return body


def trace(monkeypatch, scheduler) -> list[str]:
    """The order of prefill slices ("slice": part of the prompts, "whole": all of them) and decode steps the
    scheduler runs."""
    events: list[str] = []
    step, pstep = type(scheduler.batch).step, PendingPrefill.step
    monkeypatch.setattr(type(scheduler.batch), "step", lambda self, *a, **k: events.append("decode") or step(self, *a, **k))
    monkeypatch.setattr(PendingPrefill, "step", lambda self, max_tokens=None: events.append("whole" if max_tokens is None else "slice") or pstep(self, max_tokens))
    return events


def test_a_long_prompt_admitted_while_others_decode_goes_in_slices_between_their_steps(engine, monkeypatch):
    alone = Scheduler(engine).map([program(SHORT, 2, 30), program(LONG, 2, 6)])
    scheduler = Scheduler(engine, prefill_chunk=16, step_chunk=2, interactive_rows=2)
    events = trace(monkeypatch, scheduler)
    first = scheduler.submit(program(SHORT, 2, 30), rows=2)
    while len(scheduler.batch) == 0:  # the short prompt fits one tick: no slices
        scheduler.tick()
    assert "slice" not in events
    second = scheduler.submit(program(LONG, 2, 6), rows=2)
    scheduler.run()
    slices = [i for i, e in enumerate(events) if e == "slice"]
    assert scheduler.stats.num_prefill_slices == len(slices) >= 4  # ~60 prompt tokens, 16 per tick
    assert "decode" in events[slices[0] : slices[-1]]  # the first program kept decoding meanwhile
    assert [first.result(), second.result()] == alone


def test_prompts_queued_while_others_decode_get_one_tick_budget_each_tick(engine, monkeypatch):
    """Without slicing too, a tick prefills at most `prefill_tokens` while rows decode (at least one program):
    three short prompts that arrive together, any two over the budget, go in three ticks with decode steps
    between (the scheduler loop used to prefill all of them before the next decode step)."""
    questions = ["hello world", "add the numbers", "What is 6 * 7?"]
    lens = [len(ids) for ids in engine.start().encode([ask(q) for q in questions], [SamplingParams(max_tokens=4)] * 3)]
    scheduler = Scheduler(engine, prefill_tokens=sum(sorted(lens)[:2]) - 1, step_chunk=2)
    events = trace(monkeypatch, scheduler)
    first = scheduler.submit(program(SHORT, 2, 30), rows=2)
    while len(scheduler.batch) == 0:
        scheduler.tick()
    others = [scheduler.submit(program(q, 1, 4), rows=1) for q in questions]
    scheduler.run()
    wholes = [i for i, e in enumerate(events) if e == "whole"]
    assert len(wholes) == 4 and "slice" not in events  # the first program's prefill, then one per tick
    assert all("decode" in events[a:b] for a, b in zip(wholes[1:], wholes[2:]))
    assert first.result() and all(h.result() for h in others)


def test_while_only_wider_programs_decode_a_long_prompt_is_prefilled_at_once(engine, monkeypatch):
    """Slices are for interactive programs (a streamed reply waits on every token); bulk ones get prompts in whole."""
    scheduler = Scheduler(engine, prefill_chunk=16, step_chunk=2, interactive_rows=1)
    events = trace(monkeypatch, scheduler)
    scheduler.submit(program(SHORT, 2, 30), rows=2)
    while len(scheduler.batch) == 0:
        scheduler.tick()
    scheduler.submit(program(LONG, 2, 6), rows=2)
    scheduler.run()
    assert scheduler.stats.num_prefill_slices == 0 and "slice" not in events and events.count("whole") == 2


def test_with_nothing_decoding_a_long_prompt_is_prefilled_at_once(engine, monkeypatch):
    scheduler = Scheduler(engine, prefill_chunk=16, interactive_rows=2)
    events = trace(monkeypatch, scheduler)
    scheduler.map([program(LONG, 2, 4)])
    assert scheduler.stats.num_prefill_slices == 0 and "slice" not in events


def test_a_program_cancelled_mid_prefill_adds_no_rows(engine):
    alone = Scheduler(engine).map([program(SHORT, 2, 30)])
    scheduler = Scheduler(engine, prefill_chunk=16, step_chunk=2, interactive_rows=2)
    first = scheduler.submit(program(SHORT, 2, 30), rows=2)
    while len(scheduler.batch) == 0:
        scheduler.tick()
    doomed = scheduler.submit(program(LONG, 3, 6), rows=3)
    while scheduler.stats.num_prefill_slices == 0:
        scheduler.tick()
    doomed.cancel()
    scheduler.run()
    assert isinstance(doomed.error, Cancelled) and scheduler.stats.num_prefill_slices < 4
    assert [first.result()] == alone
    assert len(scheduler.batch) == 0


def test_serve_prefill_chunk_setting(engine):
    from testtime._errors import ValidationError
    from testtime.serve import ServeConfig
    from testtime.serve._batcher import Batcher

    assert [Batcher(engine, prefill_chunk=c).prefill_chunk for c in (None, 0, 64)] == [256, None, 64]
    for bad in (-1, 2.5, True):
        with pytest.raises(ValidationError, match="prefill_chunk"):
            ServeConfig(prefill_chunk=bad)
