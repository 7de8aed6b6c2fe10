"""Beam search, DVTS and particle filtering on the real embedded model and the default scorer, 2 short problems."""

from __future__ import annotations

import pytest

from testtime.engines import Request, SamplingParams, TransformersEngine
from testtime.scorers import ScoreRequest, load_scorer
from testtime.strategies import (
    DVTS,
    BeamSearch,
    BeamSearchParams,
    DVTSParams,
    ParticleFilter,
    ParticleFilterParams,
)
from testtime.tasks import load_task

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def engine():
    return TransformersEngine("default", seed=0)


@pytest.mark.parametrize(
    "cls, params",
    [
        pytest.param(BeamSearch, BeamSearchParams(n=4, beam_width=2, lookahead=1, max_iterations=4), id="beam"),
        pytest.param(DVTS, DVTSParams(n=4, beam_width=2, max_iterations=4), id="dvts"),
        pytest.param(ParticleFilter, ParticleFilterParams(n=4, max_iterations=4), id="pf"),
    ],
)
def test_search_on_the_embedded_model(engine, cls, params):
    problems = load_task("arith", split="dev", limit=2, num_shots=0)  # short prompts keep it quick
    scorer = load_scorer("default", engine=engine)
    e0 = engine.usage.copy()
    results = cls(engine, scorer, params=params, sampling=SamplingParams(temperature=0.8, max_tokens=96)).solve(problems)
    delta = engine.usage - e0
    assert [r.problem_id for r in results] == [p.id for p in problems]
    for r in results:
        assert 1 <= len(r.candidates) <= 2 * params.n
        for c in r.candidates:
            assert c.finish_reason in ("eos", "length", "stop") and c.num_tokens > 0
            assert c.scores and c.score == c.scores[-1]
        # select="best": the highest final score wins, ties to the lowest index.
        assert r.selected == min(range(len(r.candidates)), key=lambda i: (-r.candidates[i].score, i))
        assert r.answer == r.candidates[r.selected].answer
        assert r.usage.num_scorer_calls >= 1
        if params.__dict__.get("lookahead"):
            assert r.usage.num_scored_tokens > 0  # lookahead text goes through the scorer
        else:
            # Steps are scored from the live batch's hidden states: no scorer tokens, and a finished path's
            # last score is what the text scorer gives the same text.
            assert r.usage.num_scored_tokens == 0
            done = [c for c in r.candidates if c.finish_reason == "eos"]
            chat = next(p.chat() for p in problems if p.id == r.problem_id)
            text_scores = scorer.score(ScoreRequest(question="", messages=chat, candidates=[c.text for c in done]))[0] if done else []
            for c, ts in zip(done, text_scores, strict=True):
                assert c.score == pytest.approx(ts[-1], abs=2e-3)
    # Every generated token is charged to a problem, lookahead included.
    assert sum(r.usage.num_generated_tokens for r in results) == delta.num_generated_tokens
    prompts = sum(len(engine.encode(Request(messages=p.chat()))) - 1 for p in problems)  # the last prompt token is fed by decode
    prefill = sum(r.usage.num_prefill_tokens for r in results)
    if params.__dict__.get("lookahead"):
        assert prefill > prompts  # lookahead re-reads each beam from text
    else:
        assert abs(prefill - prompts) <= 1  # kept prefixes are never prefilled again
