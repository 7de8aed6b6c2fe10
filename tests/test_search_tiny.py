"""The searches on the in-process engine (a tiny random-weight Llama): real KV-cache forks and drops, exact
continuation for lookahead, and accounting that proves kept prefixes are never prefilled again."""

from __future__ import annotations

import pytest
from _tiny import crc_scorer, make_llama, make_tokenizer

from testtime import Request, SamplingParams, TransformersEngine
from testtime.strategies import (
    DVTS,
    BeamSearch,
    BeamSearchParams,
    DVTSParams,
    ParticleFilter,
    ParticleFilterParams,
)
from testtime.tasks import Problem

PROBLEMS = [Problem(id="a", question="Tom has 5 apples"), Problem(id="b", question="What is 6 * 7? Step 1: compute")]
SAMPLING = SamplingParams(temperature=1.0, max_tokens=40)


@pytest.fixture(scope="module")
def engine():
    tok = make_tokenizer()
    return TransformersEngine(make_llama(tok), tokenizer=tok, seed=0)


@pytest.mark.parametrize(
    "cls, params",
    [
        pytest.param(BeamSearch, BeamSearchParams(n=4, beam_width=2, max_step_tokens=8), id="beam"),
        pytest.param(BeamSearch, BeamSearchParams(n=4, beam_width=2, max_step_tokens=8, lookahead=1), id="beam-lookahead"),
        pytest.param(DVTS, DVTSParams(n=4, beam_width=2, max_step_tokens=8), id="dvts"),
        pytest.param(ParticleFilter, ParticleFilterParams(n=4, max_step_tokens=8), id="pf"),
    ],
)
def test_search_on_the_in_process_engine(engine, cls, params):
    scorer = crc_scorer()
    e0 = engine.usage.copy()
    results = cls(engine, scorer, params=params, sampling=SAMPLING).solve(PROBLEMS)
    delta = engine.usage - e0
    prompts = sum(len(engine.encode(Request(messages=p.chat()))) - 1 for p in PROBLEMS)  # last token fed by decode
    prefill = sum(r.usage.num_prefill_tokens for r in results)
    if getattr(params, "lookahead", 0):
        assert prefill == delta.num_prefill_tokens > prompts  # lookahead reads each path again
    else:
        assert prefill == delta.num_prefill_tokens == prompts  # forks and drops never prefill again
    assert sum(r.usage.num_generated_tokens for r in results) == delta.num_generated_tokens
    assert all(len(call) == 2 for call in scorer.calls[:1])  # both problems in one scorer call
    for r in results:
        assert r.candidates and all(c.finish_reason in ("eos", "length") for c in r.candidates)
        assert all(0 < c.num_tokens <= 40 for c in r.candidates)
    if not getattr(params, "lookahead", 0):
        # Every path scored at step t+1 extends a path scored at step t (forks carry their prefix exactly).
        for before, after in zip(scorer.calls, scorer.calls[1:], strict=False):
            prev = {t for req in before for t in req.candidates}
            for req in after:
                for t in req.candidates:
                    assert any(t.startswith(p) and len(t) > len(p) for p in prev) or t in prev


def test_steps_scored_from_the_live_hidden_states(engine):
    """With a head on the generator the search scores every step from the decode loop's states: no scorer
    tokens, one score per search step. The head here reads layer 0 (the embedding of the last fed token), so
    every score must be the head's value on some vocabulary embedding: it was read from the live batch."""
    import torch

    from testtime.scorers import PRMHead, PRMHeadScorer
    from testtime.scorers.prm_head import model_fingerprint

    g = torch.Generator().manual_seed(5)
    C = engine.model.config.hidden_size
    head = PRMHead(layers=[0], mean=torch.zeros(C), std=torch.ones(C), w1=torch.randn(1, C, generator=g), b1=torch.zeros(1), meta={"model": model_fingerprint(engine.model)})
    scorer = PRMHeadScorer(engine, head=head)
    params = BeamSearchParams(n=4, beam_width=2, max_step_tokens=8, partial_scores="hidden")
    (result,) = BeamSearch(engine, scorer, params=params, sampling=SAMPLING).solve(PROBLEMS[:1])
    assert result.usage.num_scored_tokens == 0 and scorer.usage.num_tokens == 0
    assert result.usage.num_scorer_calls == scorer.usage.num_calls >= 2
    vocab_scores = head(engine.model.get_input_embeddings().weight.detach().float())
    for c in result.candidates:
        assert len(c.scores) >= 2 and c.score == c.scores[-1]
        for s in c.scores:
            assert (vocab_scores - s).abs().min() < 1e-5
    with pytest.raises(Exception, match="cannot score lookahead text"):
        BeamSearch(engine, scorer, params=BeamSearchParams(n=4, beam_width=2, lookahead=1, partial_scores="hidden"))
