"""PRM training and report pieces on scripted engines and synthetic data: MC labels, resume, AUC, heads."""

from __future__ import annotations

import random

import pytest
import torch
from _tiny import make_llama, make_tokenizer

from testtime._errors import DataError, ValidationError
from testtime.engines import ScriptedEngine, TransformersEngine
from testtime.prm import (
    LabelParams,
    ReportConfig,
    StepData,
    TrainParams,
    auc,
    build_step_data,
    fit_head,
    label_problems,
    prefix_index,
    prefix_key,
    prm_report,
    summarize_rows,
    train_head,
)
from testtime.scorers import ScriptedScorer
from testtime.tasks import Problem

PROBLEM = Problem(id="p1", question="Tom has 5 apples and buys 7 more. How many?", answer="12", last_number_fallback=True)


STORIES = ["5 + 7 = 12.\n\nSo 12.", "5 + 7 = 13.\n\nSo 13."]


def handler(request, params, index):
    """A "model" that writes one of two stories; while its text so far fits both, the seed picks one."""
    fits = [s for s in STORIES if s.startswith(request.partial)]
    story = fits[0] if len(fits) == 1 else random.Random(params.seed).choice(fits)
    return story[len(request.partial) :]


def test_auc_and_prefix_index_values():
    assert auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert auc([1.0, 1.0], [True, False]) == 0.5  # a tie counts one half
    assert auc([0.3, 0.2], [True, True]) is None
    assert [prefix_index(2, f) for f in (0.25, 0.5, 0.75, 1.0)] == [0, 0, 1, 1]
    assert [prefix_index(4, f) for f in (0.25, 0.5, 0.75, 1.0)] == [0, 1, 2, 3]
    assert [prefix_index(5, f) for f in (0.25, 0.5, 0.75, 1.0)] == [1, 2, 3, 4]


def test_mc_labels_fork_sample_rows_and_resume(tmp_path):
    eng = ScriptedEngine(handler)
    params = LabelParams(num_samples=6, num_rollouts=3, seed=3)
    (row,) = label_problems(eng, [PROBLEM], tmp_path / "labels.jsonl", params, use_tqdm=False)
    texts = [s["text"] for s in row["samples"]]
    assert set(texts) == set(STORIES)  # both stories were sampled
    assert [s["correct"] for s in row["samples"]] == [t == STORIES[0] for t in texts]
    assert all(s["num_steps"] == 2 and s["finish_reason"] == "eos" for s in row["samples"])
    # From "12." every completion is right, from "13." none is; each prefix rolled out once.
    assert row["prefix_values"] == {"5 + 7 = 12.\n\n": 1.0, "5 + 7 = 13.\n\n": 0.0}
    calls = len(eng.calls)
    again = label_problems(eng, [PROBLEM], tmp_path / "labels.jsonl", params, use_tqdm=False)
    assert again == [row] and len(eng.calls) == calls  # resumed: nothing regenerated


def test_prefix_key_ends_at_the_last_separator():
    assert prefix_key("5 + 7 = 12.\n\nSo") == "5 + 7 = 12.\n\n"
    assert prefix_key("a\n\nb\n\n") == "a\n\nb\n\n"
    assert prefix_key("5 + 7") == ""


def test_labels_need_gold_answers(tmp_path):
    with pytest.raises(DataError, match="gold answer"):
        label_problems(ScriptedEngine(handler), [Problem(id="x", question="q")], tmp_path / "l.jsonl", use_tqdm=False)


def test_bad_label_params():
    with pytest.raises(ValidationError, match="num_rollouts"):
        LabelParams(num_rollouts=0)


def test_fit_head_learns_a_planted_direction():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, 12, generator=g) * 3 + 1
    y = torch.sigmoid(2 * (X[:, 4] - 1) / 3)  # soft targets from one feature
    for kind in ("logistic", "mlp"):
        head = fit_head(X, y, kind=kind, epochs=200)
        assert auc(head(X).tolist(), (y > 0.5).tolist()) > 0.97


def _step_data(num_problems=20, seed=0):
    """Two steps per solution, two solutions per problem; feature 0 at the last step carries correctness."""
    g = torch.Generator().manual_seed(seed)
    feats, value, final, prob, samp, step, nsteps = [], [], [], [], [], [], []
    for p in range(num_problems):
        for s in range(2):
            correct = float((p + s) % 2)
            for k in range(2):
                x = torch.randn(6, generator=g)
                x[0] += 3 * (correct - 0.5) * (k + 1)
                feats.append(x)
                value.append(correct if k == 1 else 0.5)
                final.append(correct)
                prob.append(p)
                samp.append(2 * p + s)
                step.append(k)
                nsteps.append(2)
    X = torch.stack(feats)
    return StepData({-1: X, 1: torch.randn(X.shape, generator=g)}, torch.tensor(value), torch.tensor(final), prob, samp, step, nsteps)


def test_train_head_picks_the_informative_layer_by_validation_auc():
    data = _step_data()
    head, tried = train_head(data, TrainParams(layer_sets=[[1], [-1]], kinds=["logistic"], epochs=150), num_problems=20)
    assert [t["layers"] for t in tried] == [[1], [-1]]
    assert head.layers == [-1] and head.meta["kind"] == "logistic"
    assert head.meta["validation"]["val_auc"]["1.0"] == 1.0
    assert head.meta["num_val_problems"] == 4


def test_step_features_match_labels_on_a_tiny_engine(tmp_path):
    tok = make_tokenizer()
    eng = TransformersEngine(make_llama(tok, seed=1), tokenizer=tok, device="cpu")
    row = {"problem_id": "p1", "samples": [{"text": "5 + 7 = 12.\n\nSo 12.", "correct": True, "num_steps": 2}], "prefix_values": {"5 + 7 = 12.\n\n": 0.25}}
    data = build_step_data(eng, [PROBLEM], [row], tmp_path / "f.pt", layers=[-1, 1], use_tqdm=False)
    assert data.value.tolist() == [0.25, 1.0] and data.final.tolist() == [1.0, 1.0] and data.step == [0, 1]
    assert data.features[-1].shape == (2, 64) and torch.equal(data.features[-1], data.features[2])
    cached = build_step_data(eng, [PROBLEM], [row], tmp_path / "f.pt", layers=[-1, 1], use_tqdm=False)
    assert torch.equal(cached.features[1], data.features[1])
    unrolled = build_step_data(eng, [PROBLEM], [{**row, "prefix_values": {}}], tmp_path / "f.pt", layers=[-1, 1], use_tqdm=False)
    assert unrolled.value.tolist() == [1.0, 1.0] and unrolled.num_outcome_labels == 1  # falls back to the outcome


def _cand(answer, correct, scores):
    return {"text": f"x = {answer}.", "answer": answer, "correct": correct, "scores": scores, "prefix_scores": {"0.25": scores[0], "0.5": scores[0], "0.75": scores[-1], "1.0": scores[-1]}}


def test_summary_selection_and_auc_values():
    rows = [
        # Majority picks the wrong 3; the scorer prefers the right 4.
        {"problem_id": "a", "candidates": [_cand("3", False, [0.5, 0.2]), _cand("3", False, [0.5, 0.2]), _cand("4", True, [0.5, 0.9])]},
        {"problem_id": "b", "candidates": [_cand("7", True, [0.5, 0.8]), _cand("8", False, [0.5, 0.1]), _cand("7", True, [0.5, 0.7])]},
    ]
    rep = summarize_rows(rows, max_n=3, reduction="last")
    assert rep.accuracy["majority"] == {1: 0.5, 2: 0.5, 3: 0.5}
    assert rep.accuracy["bon"] == {1: 0.5, 2: 0.5, 3: 1.0}
    assert rep.accuracy["weighted"] == {1: 0.5, 2: 0.5, 3: 1.0}  # 0.9 > 0.2 + 0.2
    # Unbiased pass@n over all 3 samples: a (1 correct) 1/3, 2/3, 1; b (2 correct) 2/3, 1, 1. "Any correct among
    # the first n" would give 0.5 at n = 2.
    assert rep.accuracy["pass"] == pytest.approx({1: 0.5, 2: (2 / 3 + 1) / 2, 3: 1.0})
    assert rep.auc[0.25] == 0.5 and rep.auc[1.0] == 1.0
    assert rep.auc_within[0.25] == 0.5 and rep.auc_within[1.0] == 1.0
    assert (rep.num_solutions, rep.num_correct) == (6, 3)


def test_prm_report_scores_prefixes_and_resumes(tmp_path):
    eng = ScriptedEngine(handler)
    # An outcome scorer (one score per text): the report scores the cut prefixes itself.
    scorer = ScriptedScorer(lambda q, steps: [1.0 if "12" in steps[-1] else 0.0])
    config = ReportConfig(max_n=4, chunk_size=1)
    rep = prm_report(eng, scorer, [PROBLEM], tmp_path, config, use_tqdm=False)
    assert rep.accuracy["bon"][4] == 1.0 and rep.accuracy["majority"][2] == 1.0
    assert rep.auc[0.25] == 1.0 and rep.auc[1.0] == 1.0
    prefix_calls = [c for call in scorer.calls for c in call[0].candidates if c.count("\n\n") == 0 and "12." in c and "So" not in c]
    assert prefix_calls  # 25%/50% of a 2-step solution: its first step, scored on its own
    n = len(eng.calls)
    again = prm_report(eng, scorer, [PROBLEM], tmp_path, config, use_tqdm=False)
    assert again.accuracy == rep.accuracy and len(eng.calls) == n
    with pytest.raises(ValidationError, match="different settings"):
        prm_report(eng, scorer, [PROBLEM], tmp_path, ReportConfig(max_n=8), use_tqdm=False)


def test_a_separator_split_across_two_advances_is_still_rolled_out(tmp_path):
    # "11+1=12" is 7 characters: the first 8-token advance ends on the first "\n", the next starts with the second,
    # so the engine's per-advance stop search never reports this boundary.
    stories = ["11+1=12\n\nSo the answer is 12.", "11+1=13\n\nSo the answer is 13."]

    def split_handler(request, params, index):
        fits = [s for s in stories if s.startswith(request.partial)]
        story = fits[0] if len(fits) == 1 else random.Random(params.seed).choice(fits)
        return story[len(request.partial) :]

    (row,) = label_problems(ScriptedEngine(split_handler), [PROBLEM], tmp_path / "l.jsonl", LabelParams(num_samples=6, num_rollouts=2), use_tqdm=False)
    assert {s["text"] for s in row["samples"]} == set(stories)
    assert row["prefix_values"] == {"11+1=12\n\n": 1.0, "11+1=13\n\n": 0.0}
