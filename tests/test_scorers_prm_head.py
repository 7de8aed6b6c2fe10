"""The built-in PRM head scorer on a tiny engine: read positions, prefix consistency, batching, files, lookup."""

from __future__ import annotations

import pytest
import torch
from _tiny import make_llama, make_tokenizer

from testtime._errors import ScorerError
from testtime.engines import Request, SamplingParams, TransformersEngine
from testtime.scorers import PRMHead, PRMHeadScorer, ScoreRequest, load_scorer
from testtime.scorers.prm_head import find_head, model_fingerprint, step_features, step_read_positions

MESSAGES = [{"role": "system", "content": "Solve it."}, {"role": "user", "content": "Tom has 5 apples and buys 7 more."}]


@pytest.fixture(scope="module")
def engine():
    tok = make_tokenizer()
    return TransformersEngine(make_llama(tok, seed=7), tokenizer=tok, device="cpu")


def _random_head(engine, layers=(-1,), kind="mlp", seed=0):
    g = torch.Generator().manual_seed(seed)
    F = engine.model.config.hidden_size * len(layers)
    head = PRMHead(layers=list(layers), mean=torch.randn(F, generator=g), std=torch.rand(F, generator=g) + 0.5, w1=torch.randn(8 if kind == "mlp" else 1, F, generator=g) / F**0.5, b1=torch.randn(8 if kind == "mlp" else 1, generator=g))
    if kind == "mlp":
        head.w2, head.b2 = torch.randn(1, 8, generator=g) / 3, torch.randn(1, generator=g)
    head.meta = {"model": model_fingerprint(engine.model)}
    return head


def test_read_positions_are_each_steps_last_visible_token(engine):
    tok = engine.tokenizer
    text = "5 + 7 = 12.\n\nSo 12.\n\n\n\nDone!\n\n"
    ids, pos = step_read_positions(tok, text)
    assert ids == tok(text, add_special_tokens=False).input_ids
    # Steps "5 + 7 = 12.", "So 12.", "" (blank, reads where the text before it ends), "Done!"; no trailing empty step.
    assert [tok.decode(ids[: p + 1]) for p in pos] == ["5 + 7 = 12.", "5 + 7 = 12.\n\nSo 12.", "5 + 7 = 12.\n\nSo 12.", "5 + 7 = 12.\n\nSo 12.\n\n\n\nDone!"]


def test_features_are_the_hidden_states_at_those_positions(engine):
    text = "5 + 7 = 12.\n\nSo 12."
    feats = step_features(engine, MESSAGES, [text], layers=[-1, 1])[0]
    ids = engine.encode(Request(messages=MESSAGES, partial=text))
    with torch.no_grad():
        hs = engine.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    _, pos = step_read_positions(engine.tokenizer, text)
    prompt = len(ids) - len(engine.tokenizer(text, add_special_tokens=False).input_ids)
    rows = [prompt + p for p in pos]
    want = torch.cat([hs[-1][0, rows], hs[1][0, rows]], -1)
    assert feats.shape == (2, 2 * engine.model.config.hidden_size)
    assert torch.allclose(feats, want, atol=1e-5)


def test_partial_solutions_score_like_prefixes_of_complete_ones(engine):
    head = _random_head(engine)
    scorer = PRMHeadScorer(engine, head=head, batch_size=2)
    text = "5 + 7 = 12.\n\nSo 12.\n\nDone!"
    full, partial, short, empty = scorer.score(
        ScoreRequest(question="q", messages=MESSAGES, candidates=[text, "5 + 7 = 12.\n\nSo 12.\n\n", "5 + 7 = 12.\n\nSo 12.", ""])
    )[0]
    assert len(full) == 3 and empty == []
    assert partial == pytest.approx(full[:2], abs=1e-5) and short == pytest.approx(full[:2], abs=1e-5)
    # Each step's score is the head on the last layer's hidden state at the step's read position, from a plain
    # transformers forward of prompt + text.
    ids = engine.encode(Request(messages=MESSAGES, partial=text))
    with torch.no_grad():
        hs = engine.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
    prompt = len(ids) - len(engine.tokenizer(text, add_special_tokens=False).input_ids)
    rows = [prompt + p for p in step_read_positions(engine.tokenizer, text)[1]]
    assert full == pytest.approx(head(hs[rows]).tolist(), abs=1e-4)


def test_batching_does_not_change_scores(engine):
    head = _random_head(engine, layers=(-1, 1), kind="logistic")
    cands = ["5 + 7 = 12.", "Step 1: add the numbers.\n\nStep 2: multiply 3 by 4 to get 12.\n\nThe answer is 42.", "1 + 1 = 2.\n\nYes."]
    one = PRMHeadScorer(engine, head=head, batch_size=1).score(ScoreRequest(messages=MESSAGES, candidates=cands))[0]
    many = PRMHeadScorer(engine, head=head, batch_size=3).score(ScoreRequest(messages=MESSAGES, candidates=cands))[0]
    for a, b in zip(one, many):
        assert a == pytest.approx(b, abs=1e-5)


def test_head_file_round_trip_and_name_lookup(engine, tmp_path):
    head = _random_head(engine)
    head.meta["note"] = "x"
    path = head.save(tmp_path / "h")
    assert path.name == "h.safetensors" and (tmp_path / "h.json").exists()
    loaded = PRMHead.load(path)
    x = torch.randn(5, engine.model.config.hidden_size)
    assert torch.equal(loaded(x), head(x)) and loaded.meta["note"] == "x" and loaded.layers == [-1]
    scorer = load_scorer(str(path), engine=engine)
    assert isinstance(scorer, PRMHeadScorer)


def test_default_is_self_eval_without_a_head_and_wrong_heads_are_refused(engine, tmp_path):
    assert find_head(engine.model) is None
    # No head for this model: "default" falls back to self-eval (which this tiny vocabulary cannot serve).
    with pytest.raises(ScorerError, match="self-eval scorer needs single-token 'Yes'"):
        load_scorer("default", engine=engine)
    head = _random_head(engine)
    head.meta["model"] = {**head.meta["model"], "hidden_size": 999}
    with pytest.raises(ScorerError, match="different model"):
        PRMHeadScorer(engine, head=head)
    with pytest.raises(ScorerError, match="no shipped PRM head"):
        PRMHeadScorer(engine)
    with pytest.raises(ScorerError, match="train-prm"):
        PRMHead.load(tmp_path / "missing.safetensors")


def test_live_hidden_scores_equal_text_scores_at_the_step_end(engine):
    """A head on an inner layer scores a live row from the decode loop's states: continuing "...12." by one
    token leaves the step's last visible token as the last fed one, so the live score is the text score of
    the step, with no scorer tokens."""
    head = _random_head(engine, layers=(1,), kind="logistic", seed=3)
    scorer = PRMHeadScorer(engine, head=head)
    partial = "5 + 7 = 12.\n\nSo 12."
    batch = engine.start(Request(messages=MESSAGES, partial=partial), SamplingParams(temperature=1.0, max_tokens=4, seed=0, ignore_eos=True))
    batch.track_hidden_states(scorer.hidden_layers)
    batch.advance(1)
    live = scorer.score_hidden(batch.last_hidden_states(scorer.hidden_layers))
    text = scorer.score(ScoreRequest(question="q", messages=MESSAGES, candidates=[partial]))[0][0]
    assert len(text) == 2 and live == pytest.approx([text[-1]], abs=1e-4)
    assert scorer.usage.num_calls == 2 and scorer.usage.num_tokens == len(engine.encode(Request(messages=MESSAGES, partial=partial)))
