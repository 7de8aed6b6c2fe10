"""End to end on the real embedded model (SmolLM2-135M-Instruct): a few problems, real tokenizer, real eval."""

from __future__ import annotations

import pytest
import torch

from testtime.engines import Request, SamplingParams, TransformersEngine
from testtime.eval import EvalConfig, run_eval
from testtime.grading import extract_answer, is_equiv
from testtime.scorers import ScoreRequest, load_scorer
from testtime.strategies import Candidate, majority_vote, weighted_vote
from testtime.tasks import load_task

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def engine():
    return TransformersEngine("default", seed=0)


@pytest.fixture(scope="module")
def problems():
    return load_task("arith", split="dev", limit=3)


def test_embedded_model_loads_on_the_native_path(engine):
    assert engine.runner is not None and engine.model.config.model_type == "llama"
    assert engine.eos_ids >= {engine.tokenizer.convert_tokens_to_ids("<|im_end|>")}


def test_greedy_matches_transformers_generate(engine):
    for p in load_task("arith", split="dev", limit=2, num_shots=0):  # short prompts keep transformers' side quick
        ids = engine.encode(Request(messages=p.chat()))
        ref = engine.model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False, pad_token_id=2)[0, len(ids) :].tolist()
        out = engine.generate(Request(messages=p.chat()), SamplingParams(temperature=0, max_tokens=24))[0].completions[0]
        assert out.token_ids == ref[: len(out.token_ids)] and (len(out.token_ids) == 24 or out.finish_reason == "eos")


def test_real_tokenizer_would_fuse_a_partial_with_the_prompt(engine, problems):
    """Why partial answers are encoded apart: jointly, the prompt's final "\\n" and a partial starting with a
    blank line re-tokenize into a different split ("\\n\\n" + "\\n" instead of "\\n" + "\\n\\n") that the
    uninterrupted generation never saw."""
    tok = engine.tokenizer
    msgs = problems[0].chat()
    partial = "\n\nLet us add."
    rendered = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    ours = engine.encode(Request(messages=msgs, partial=partial))
    joint = tok(rendered + partial, add_special_tokens=False).input_ids
    assert ours == tok(rendered, add_special_tokens=False).input_ids + tok(partial, add_special_tokens=False).input_ids
    assert ours != joint and len(joint) == len(ours) - 1


def test_live_batch_steps_end_at_blank_lines(engine, problems):
    batch = engine.start([Request(messages=p.chat()) for p in problems], SamplingParams(n=2, temperature=0.8, max_tokens=200, seed=1))
    steps = batch.advance(stop=["\n\n"])
    assert len(steps) == 6
    for r, s in enumerate(steps):
        assert s.reason in ("boundary", "eos", "length")
        if s.reason == "boundary":
            assert "\n\n" in s.text and batch.completion(r).text == s.text
    before = engine.usage.num_prefill_tokens
    batch.reorder([0, 0, 3])
    steps = batch.advance(stop=["\n\n"])
    assert engine.usage.num_prefill_tokens == before and batch.request_indices == [0, 0, 1]


def test_eval_on_three_problems(tmp_path, engine, problems):
    cfg = EvalConfig(task="arith", split="dev", limit=3, strategies=["greedy", "majority", "weighted"], n=[1, 2], scorer="self-eval", max_tokens=160, out=str(tmp_path / "run"))
    report = run_eval(cfg, engine=engine, problems=problems, progress=False, log=lambda *_: None)
    assert [(r.strategy, r.n) for r in report.summary] == [("greedy", 1), ("majority", 1), ("majority", 2), ("weighted", 1), ("weighted", 2)]
    assert len(report.rows) == 9
    row = {(r["problem_id"], r["strategy"]): r for r in report.rows}
    scorer = load_scorer("self-eval", engine=engine)
    for p in problems:
        greedy, majority, weighted = (row[(p.id, s)] for s in ("greedy", "majority", "weighted"))
        assert greedy["gold"] == p.answer and p.answer.isdigit()
        assert majority["candidates"] == weighted["candidates"]  # one shared generation and scoring
        texts = [c["text"] for c in weighted["candidates"]]
        # Each stored score is what the self-eval scorer gives that candidate's text (scores stay with their text).
        (rescored,) = scorer.score(ScoreRequest(question=p.question, candidates=texts, messages=p.chat()))
        assert [c["scores"] for c in weighted["candidates"]] == [[pytest.approx(s[0], abs=1e-3)] for s in rescored]
        assert [c["score"] for c in weighted["candidates"]] == [c["scores"][0] for c in weighted["candidates"]]
        for c in greedy["candidates"] + weighted["candidates"]:
            assert c["num_tokens"] > 0 and c["answer"] == extract_answer(c["text"], last_number=p.last_number_fallback)
            assert c["correct"] == (c["answer"] is not None and is_equiv(p.answer, c["answer"]))
        # Budget 2's choices are the selection rules applied to the first two candidates.
        cands = [Candidate(index=i, answer=c["answer"], score=c["score"]) for i, c in enumerate(weighted["candidates"])]
        for r, rule in ((majority, majority_vote), (weighted, weighted_vote)):
            pick = rule(cands)
            assert r["by_n"]["2"]["selected"] == pick and r["by_n"]["2"]["answer"] == (None if pick is None else cands[pick].answer)
    # The model follows the few-shot format: most candidates end with an extractable integer answer.
    answers = [c["answer"] for r in report.rows for c in r["candidates"]]
    assert sum(a is not None and a.lstrip("-").isdigit() for a in answers) >= len(answers) // 2
    # The summary counts the rows: greedy's accuracy is its rows' mean; at n = 1 both votes take the first sample.
    acc = {(r.strategy, r.n): r.accuracy for r in report.summary}
    assert acc[("greedy", 1)] == sum(row[(p.id, "greedy")]["by_n"]["1"]["correct"] for p in problems) / 3
    first_right = sum(bool(row[(p.id, "majority")]["candidates"][0]["correct"]) for p in problems) / 3
    assert acc[("majority", 1)] == acc[("weighted", 1)] == first_right
