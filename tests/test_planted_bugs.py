"""Rules that a deliberate bug once changed without any test noticing (issue 18, "tests that catch bugs").

Each test feeds inputs on which the plausible wrong versions give a different value: step reductions,
Speculative Rejection's keep count and its "auto" selection, systematic resampling's expected copy counts,
the within-problem AUC, what majority vote is charged, the wall-time split over a batch's problems, beam
search's remainder rule, and `bench spr`'s resume of a partly written chunk.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections import Counter
from types import SimpleNamespace

import pytest
from _search_fakes import Plan, by_step, texts

from testtime.engines import EngineUsage, SamplingParams, ScriptedEngine
from testtime.eval import EvalConfig, run_eval
from testtime.eval.replay import StoredProblem, calibration
from testtime.eval.spr_bench import SprBenchConfig, run_spr_bench
from testtime.prm import summarize_rows
from testtime.scorers import ConfidenceTrace, ScorerUsage, ScriptedScorer, reduce_scores
from testtime.strategies import (
    BeamSearch,
    BeamSearchParams,
    BestOfN,
    Candidate,
    SamplingStrategyParams,
    SpeculativeRejection,
    SpeculativeRejectionParams,
)
from testtime.strategies import _base as strategies_base
from testtime.strategies import _step_search as step_search
from testtime.strategies._base import split_usage
from testtime.strategies._step_search import expand
from testtime.strategies.particle_filter import resample_multinomial, resample_systematic
from testtime.strategies.speculative_rejection import Round, keep_count
from testtime.tasks import Problem

# -- step reductions ---------------------------------------------------------------------------------------
# Per-step scores on which every reduction gives a different number, and which none of first step, median or
# (first + last) / 2 reproduces: last 0.7, min 0.2 (first 0.9), mean 0.575 (median 0.6, ends 0.8), prod 0.063.
STEPS = [0.9, 0.2, 0.5, 0.7]


@pytest.mark.parametrize("how, want", [("last", 0.7), ("min", 0.2), ("mean", 0.575), ("prod", 0.9 * 0.2 * 0.5 * 0.7)])
def test_each_reduction_of_distinguishing_step_scores(how, want):
    assert reduce_scores(STEPS, how) == pytest.approx(want, abs=1e-12)
    assert reduce_scores([], how) == 0.0


# Candidate i's step scores: each reduction ranks a different candidate first.
#   last: A (0.95); min: B (0.7; first-step would pick C); mean: C (0.817; median would pick A).
RANKED_STEPS = {"A": [0.2, 0.9, 0.95], "B": [0.7, 0.7, 0.7], "C": [0.95, 0.9, 0.6]}


def three_step_engine() -> ScriptedEngine:
    names = list(RANKED_STEPS)
    return ScriptedEngine(lambda request, params, index: f"step one {names[index]}\n\nstep two\n\n\\boxed{{{names[index]}}}")


def three_step_scorer() -> ScriptedScorer:
    return ScriptedScorer(lambda q, steps: RANKED_STEPS[steps[0][-1]][: len(steps)])


@pytest.mark.parametrize("how, chosen", [("last", "A"), ("min", "B"), ("mean", "C")])
def test_best_of_n_ranks_by_the_chosen_reduction(how, chosen):
    res = BestOfN(three_step_engine(), three_step_scorer(), params=SamplingStrategyParams(n=3, reduction=how)).solve(Problem(id="r", question="q"))[0]
    assert [c.scores for c in res.candidates] == list(RANKED_STEPS.values())
    assert res.answer == chosen and res.candidates[res.selected].score == pytest.approx(reduce_scores(RANKED_STEPS[chosen], how))


# -- Speculative Rejection: how many live candidates a decision keeps ----------------------------------------


@pytest.mark.parametrize(
    "alpha, kept",
    [
        # keep (1 - alpha) x live, rounded half up, at least one. At 0.3: 0.7 x 5 = 3.5 -> 4, 0.7 x 15 = 10.5 -> 11
        # (Python's round-half-to-even gives 10), 0.7 x 4 = 2.8 -> 3 (floor gives 2).
        (0.3, {0: 0, 1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 5, 8: 6, 9: 6, 10: 7, 15: 11, 16: 11}),
        # At 0.7: 0.3 x 5 = 1.5 -> 2, 0.3 x 10 = 3 (a ceiling of 3.0000000000000004 gives 4), 0.3 x 2 = 0.6 -> 1.
        # Keeping alpha instead of 1 - alpha agrees with both only at 0.5.
        (0.7, {0: 0, 1: 1, 2: 1, 3: 1, 4: 1, 5: 2, 6: 2, 7: 2, 8: 2, 9: 3, 10: 3, 15: 5, 16: 5}),
        (0.5, {1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 8: 4}),
        (0.0, {1: 1, 7: 7}),
    ],
)
def test_keep_count_rounds_half_up(alpha, kept):
    assert {n: keep_count(alpha, n) for n in kept} == kept


def spr_engine() -> ScriptedEngine:
    """Candidate j writes "[jj]" then x's, 60 tokens in all; a continued row writes the rest of its own text."""
    handed = Counter()

    def handler(request, params, index):
        if request.partial:
            j = int(request.partial[1:3])
        else:
            j = handed[request.messages[-1]["content"]]
            handed[request.messages[-1]["content"]] += 1
        return (f"[{j:02d}]" + "x" * 55 + ".")[len(request.partial) :]

    return ScriptedEngine(handler)


@pytest.mark.parametrize("alpha, n, rejected", [(0.3, 15, 4), (0.3, 4, 1), (0.7, 5, 3), (0.7, 10, 7)])
def test_spr_rejects_the_rounded_share_at_alpha_0_3_and_0_7(alpha, n, rejected):
    scorer = ScriptedScorer(lambda q, steps: [int(steps[-1][1:3]) / 100])  # a higher index scores higher
    spr = SpeculativeRejection(spr_engine(), scorer, params=SpeculativeRejectionParams(n=n, alpha=alpha, decision_tokens=[10]), sampling=SamplingParams(temperature=1.0, max_tokens=100))
    res = spr.solve(Problem(id="k", question="q"))[0]
    assert spr.rounds["k"] == [Round(10, n, 0, rejected), Round(10, 0, n - rejected, 0)]
    # The survivors are the highest-scoring (the last) candidates; they ran to the end.
    assert [c.finish_reason is not None for c in res.candidates] == [j >= rejected for j in range(n)]


# -- Speculative Rejection: selection="auto" --------------------------------------------------------------


def spr_select(texts_and_scores: list[tuple[str, float]]):
    """SpR with the default selection ("auto") over one-step candidates that all finish before the first
    decision point; each text's final score is given."""
    final = dict(texts_and_scores)
    order = [t for t, _ in texts_and_scores]
    handed = Counter()

    def handler(request, params, index):
        handed["n"] += 1
        return order[(handed["n"] - 1) % len(order)]

    scorer = ScriptedScorer(lambda q, steps: [final.get(steps[-1], 0.0)])
    params = SpeculativeRejectionParams(n=len(order), alpha=0.5, decision_tokens=[100])
    return SpeculativeRejection(ScriptedEngine(handler), scorer, params=params, sampling=SamplingParams(temperature=1.0, max_tokens=200)).solve(Problem(id="s", question="q"))[0]


# "3" is the single best candidate; "5" wins a score-weighted vote (0.4 + 0.4 > 0.7).
ANSWERED = [("So \\boxed{3}.", 0.7), ("Thus \\boxed{5}.", 0.4), ("Hence \\boxed{5}!", 0.4)]


@pytest.mark.parametrize(
    "unanswered, want",
    [
        pytest.param(2, "5", id="3-of-5-answered-votes"),
        pytest.param(3, "3", id="half-answered-is-not-most-ranks"),
        pytest.param(4, "3", id="3-of-7-answered-ranks"),
    ],
)
def test_auto_selection_votes_only_when_most_finished_candidates_answer(unanswered, want):
    blanks = [(f"no answer here {k}.", 0.1) for k in range(unanswered)]
    res = spr_select(ANSWERED + blanks)
    assert all(c.finish_reason is not None for c in res.candidates)
    assert res.answer == want
    assert res.selected == (0 if want == "3" else 1)


def test_auto_selection_a_zero_score_is_still_a_vote_weight():
    # Every candidate answers and no score is negative (0.0 is the lowest weight, not a log-probability).
    res = spr_select(ANSWERED + [("Therefore \\boxed{9}.", 0.0)])
    assert (res.answer, res.selected) == ("5", 1)
    res = spr_select(ANSWERED + [("Therefore \\boxed{9}.", -0.01)])
    assert (res.answer, res.selected) == ("3", 0)  # a negative score: rank, do not vote


# -- particle filtering: resampling is unbiased ------------------------------------------------------------


@pytest.mark.parametrize("resample", [resample_systematic, resample_multinomial], ids=["systematic", "multinomial"])
@pytest.mark.parametrize(
    "weights, k",
    [([0.5, 0.3, 0.15, 0.05], 8), ([0.37, 0.21, 0.29, 0.13], 5), ([0.05, 0.6, 0.05, 0.3], 3), ([0.1] * 10, 4)],
)
def test_resampling_copies_particle_i_k_times_w_i_on_average(resample, weights, k):
    """E[copies of i] = k w_i for an unbiased resampler; 4000 seeded draws pin the mean to a few hundredths
    (systematic: each count is floor or ceil of k w_i, variance <= 1/4; multinomial: k w (1 - w))."""
    draws = 4000
    rng = random.Random(11)
    total = Counter()
    for _ in range(draws):
        picks = resample(weights, k, rng)
        assert len(picks) == k
        total.update(picks)
    for i, w in enumerate(weights):
        tol = 4 * math.sqrt(max(0.25, k * w * (1 - w)) / draws)
        assert total[i] / draws == pytest.approx(k * w, abs=tol), f"particle {i}"


# -- the within-problem AUC --------------------------------------------------------------------------------
# Problem A: right answers score 0.9, 0.2; wrong ones 0.5, 0.1 -> AUC 3/4. Problem B: right 0.3, wrong 0.6 -> 0.
# Problem C: all right -> no AUC, left out. Within = mean(0.75, 0) = 0.375. The wrong aggregations give:
# pooled 5/15, weighted by candidates 0.5, by pairs 0.6, C counted as 0.5 -> 0.417, as 0 -> 0.25.
AUC_PROBLEMS = {"A": [(0.9, True), (0.2, True), (0.5, False), (0.1, False)], "B": [(0.3, True), (0.6, False)], "C": [(0.05, True), (0.05, True)]}


def test_prm_report_within_problem_auc_is_the_mean_over_problems_with_both_classes():
    def cand(score, correct):
        return {"text": "x", "answer": "1" if correct else "2", "correct": correct, "scores": [score], "prefix_scores": {str(f): score for f in (0.25, 0.5, 0.75, 1.0)}}

    rows = [{"problem_id": pid, "candidates": [cand(s, y) for s, y in cands]} for pid, cands in AUC_PROBLEMS.items()]
    rep = summarize_rows(rows, max_n=2, reduction="last")
    assert rep.auc_within == {f: 0.375 for f in (0.25, 0.5, 0.75, 1.0)}
    assert rep.auc[1.0] == pytest.approx(5 / 15)


def test_replay_calibration_within_problem_auc_is_the_mean_over_problems_with_both_classes():
    def trace(conf):
        return ConfidenceTrace(logprob=[-1.0] * 3, confidence=[conf] * 3, certainty=[])

    stored = [StoredProblem(pid, "1", [Candidate(answer="1" if y else "2") for _, y in c], [y for _, y in c], [trace(s) for s, _ in c]) for pid, c in AUC_PROBLEMS.items()]
    mean = next(r for r in calibration(stored, windows=(2,), tails=(2,)) if r["metric"] == "mean")
    assert mean["auc_within"] == 0.375 and mean["num_problems_within"] == 2
    assert mean["auc_pooled"] == pytest.approx(5 / 15) and mean["num_samples"] == 8


# -- what majority vote is charged in an eval --------------------------------------------------------------


def answering_engine() -> ScriptedEngine:
    answers = ["5", "3", "5", "7"]
    return ScriptedEngine(lambda request, params, index: f"Step 1: think.\n\nThe answer is $\\boxed{{{answers[index]}}}$." + "." * index)


def test_majority_is_charged_generated_tokens_only_and_ranked_strategies_their_scoring(tmp_path):
    """Majority, weighted and best-of-N share one generation per problem in the eval, and one scorer pass;
    only the strategies that read scores pay for it: the question once per problem (a shared scorer prompt)
    plus the text of the first n candidates."""
    scorer = ScriptedScorer(lambda q, steps: [0.5], shared_prompt=True)
    problems = [Problem(id=f"p{k}", question="q" * (10 + k), answer="5") for k in range(3)]
    cfg = EvalConfig(task="scripted", strategies=["majority", "weighted", "bon"], n=[1, 2, 4], out=str(tmp_path / "run"), batch_problems=3)
    report = run_eval(cfg, engine=answering_engine(), scorer=scorer, problems=problems, progress=False, log=lambda *_: None)
    for row in report.rows:
        chars = [len(c["text"]) for c in row["candidates"]]
        q = len(next(p.question for p in problems if p.id == row["problem_id"]))
        for n in ("1", "2", "4"):
            at = row["by_n"][n]
            assert at["num_generated_tokens"] == sum(c["num_tokens"] for c in row["candidates"][: int(n)])
            scored = 0 if row["strategy"] == "majority" else q + sum(chars[: int(n)])
            assert at["num_compute_tokens"] - at["num_generated_tokens"] == scored, (row["strategy"], n)
            # Wall time at n < N is the run's, scaled by the first n candidates' share of the generated tokens.
            total = sum(c["num_tokens"] for c in row["candidates"])
            assert at["wall_time"] == pytest.approx(row["usage"]["wall_time"] * at["num_generated_tokens"] / total, rel=1e-12)
    by = {(r.strategy, r.n): r for r in report.summary}
    assert all(by[("majority", n)].mean_compute_tokens == by[("majority", n)].mean_generated_tokens for n in (1, 2, 4))
    assert by[("weighted", 4)].mean_compute_tokens == by[("bon", 4)].mean_compute_tokens > by[("majority", 4)].mean_compute_tokens


# -- the wall-time split over a batch's problems -----------------------------------------------------------


def test_split_usage_splits_wall_time_evenly_and_tokens_by_size():
    """Three problems solved together in 6 s: each is charged 2 s, whatever its prompt, text or generated
    tokens (uneven on purpose, so a split by any of them gives other numbers); prefill follows prompt size,
    the scorer's shared prompt too, the rest of the scoring the scored text."""
    problems = [Problem(id=f"w{i}", question="q") for i in range(3)]
    engine = EngineUsage(num_prefill_tokens=600, num_generated_tokens=555, num_calls=4)
    scorer = ScorerUsage(num_tokens=130, num_calls=2, num_prefix_tokens=30)
    usages = split_usage(problems, engine, scorer, 6.0, prompt_tokens=[100, 200, 300], scored_chars=[10, 30, 60], generated=[5, 50, 500])
    assert [u.wall_time for u in usages] == [2.0, 2.0, 2.0]
    assert [u.num_prefill_tokens for u in usages] == [100, 200, 300]
    assert [u.num_generated_tokens for u in usages] == [5, 50, 500]
    assert [u.num_scored_prefix_tokens for u in usages] == [5, 10, 15]
    assert [u.num_scored_tokens for u in usages] == [5 + 10, 10 + 30, 15 + 60]
    assert [(u.num_engine_calls, u.num_scorer_calls) for u in usages] == [(4, 2)] * 3
    assert sum(u.wall_time for u in usages) == 6.0


def test_a_strategy_charges_each_problem_an_even_share_of_its_batch_wall_time(monkeypatch):
    clock = iter(range(0, 1000, 6))  # every perf_counter() call advances the strategy's clock by 6 s
    monkeypatch.setattr(strategies_base, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    problems = [Problem(id="a", question="short"), Problem(id="b", question="a much longer question " * 5)]
    eng = ScriptedEngine(lambda request, params, index: "x" * (3 if "short" in request.messages[-1]["content"] else 40))
    res = BestOfN(eng, ScriptedScorer(lambda q, steps: [0.5]), params=SamplingStrategyParams(n=2)).solve(problems)
    assert [r.usage.wall_time for r in res] == [3.0, 3.0]
    assert [r.usage.num_generated_tokens for r in res] == [6, 80]


def test_a_step_search_charges_each_problem_an_even_share_of_its_batch_wall_time(monkeypatch):
    clock = iter(range(0, 1000, 6))
    monkeypatch.setattr(step_search, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))

    def handler(request, params, index):  # "short" writes 2-token steps, the other problem 30-token ones
        step = "ab" if "short" in request.messages[-1]["content"] else "c" * 30
        return "\\boxed{1}" if request.partial.count("\n\n") >= 1 else step + "\n\nmore"

    problems = [Problem(id="a", question="short"), Problem(id="b", question="a much longer question " * 5)]
    res = BeamSearch(ScriptedEngine(handler), by_step({}, default=0.5), params=BeamSearchParams(n=2, beam_width=2)).solve(problems)
    assert [r.usage.num_generated_tokens for r in res] == [2 * (4 + 9), 2 * (32 + 9)]
    assert [r.usage.wall_time for r in res] == [3.0, 3.0]


# -- beam search: the remainder rule -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "keep, n, want",
    [
        ([2, 5, 7], 8, [2, 2, 2, 5, 5, 5, 7, 7]),  # 8 = 3 + 3 + 2: the first kept beams get the remainder
        ([0, 1, 2, 3, 4], 8, [0, 0, 1, 1, 2, 2, 3, 4]),
        ([4, 9], 5, [4, 4, 4, 9, 9]),
        ([1, 3], 4, [1, 1, 3, 3]),
        ([6], 3, [6, 6, 6]),
    ],
)
def test_expand_gives_the_remainder_to_the_first_kept_beams(keep, n, want):
    assert expand(keep, n) == want


def test_beam_search_refills_n_paths_from_fewer_than_n_over_m_survivors():
    """n = 8, beam width 2: four beams would be kept, but five of the eight first steps end the solution, so
    three are alive. They are expanded to 3 + 3 + 2 children, the extra ones going to the lowest rows (not
    to the best-scoring beam, s6)."""
    plan = Plan(texts={k: f"\\boxed{{{k}}}" for k in range(5)} | {k: f"\\boxed{{{k}}}" for k in range(8, 16)}, final=set(range(5)) | set(range(8, 16)))
    scorer = by_step({"s5": 0.2, "s6": 0.9, "s7": 0.5})
    res = BeamSearch(ScriptedEngine(plan), scorer, params=BeamSearchParams(n=8, beam_width=2)).solve(Problem(id="b", question="q"))[0]
    calls = [texts(c) for c in scorer.calls]
    assert [t.split("\n\n")[0] for t in calls[1]] == ["s5"] * 3 + ["s6"] * 3 + ["s7"] * 2
    assert len(calls) == 2 and len(res.candidates) == 13  # 5 + 8 completed; n reached, the search stops


# -- `bench spr`: resuming a partly written chunk ----------------------------------------------------------


def bench_engine() -> ScriptedEngine:
    def handler(request, params, index):
        q = request.partial[1] if request.partial else random.Random(params.seed).randrange(10)
        return (f"<{q}>" + "x" * 17 + ".")[len(request.partial) :]

    return ScriptedEngine(handler)


def bench_scorer() -> ScriptedScorer:
    return ScriptedScorer(lambda question, steps: [int(steps[-1][1]) / 10 if len(steps[-1]) > 1 else 0.0])


def without_wall_time(row: dict) -> dict:
    row = json.loads(json.dumps(row))
    row["usage"].pop("wall_time")
    return row


def test_bench_spr_resume_runs_only_the_missing_rows_of_a_partly_written_chunk(tmp_path):
    problems = [Problem(id=f"p{i}", question=f"question {i}") for i in range(4)]
    config = dict(task="fake", limit=None, bon_n=[2, 4], n=8, alphas=[0.5], decision_tokens=[5], chunk=2, max_tokens=32)
    run_spr_bench(SprBenchConfig(**config, out=str(tmp_path / "full")), engine=bench_engine(), scorer=bench_scorer(), problems=problems, progress=False, log=lambda s: None)
    lines = (tmp_path / "full" / "results.jsonl").read_text().splitlines(keepends=True)
    rows = [json.loads(x) for x in lines]
    assert [(r["method"], r["problem_id"]) for r in rows] == [(m, p) for c in (["p0", "p1"], ["p2", "p3"]) for m in ("bon", "spr-0.5-n8-d5") for p in c]
    # The first chunk is complete; the second stopped after BoN's row for p2 (SpR p2, BoN p3, SpR p3 missing),
    # and the first chunk lost its SpR row for p1 (a torn last write, say): both chunks are partial.
    keep = [0, 1, 2, 4]
    part = tmp_path / "part"
    part.mkdir()
    shutil.copy(tmp_path / "full" / "run.json", part / "run.json")
    (part / "results.jsonl").write_text("".join(lines[i] for i in keep))
    eng = bench_engine()
    run_spr_bench(SprBenchConfig(**config, out=str(part)), engine=eng, scorer=bench_scorer(), problems=problems, progress=False, log=lambda s: None)
    resumed = (part / "results.jsonl").read_text().splitlines(keepends=True)
    assert resumed[: len(keep)] == [lines[i] for i in keep]  # nothing already written is touched
    keys = [(json.loads(x)["method"], json.loads(x)["problem_id"]) for x in resumed]
    assert len(keys) == len(set(keys)) == 8  # every row once: no rerun of a chunk's finished rows
    missing = [rows[i] for i in range(8) if i not in keep]
    assert sorted(keys[len(keep) :]) == sorted((r["method"], r["problem_id"]) for r in missing)
    # Only the missing rows were generated, and they are the rows an uninterrupted run wrote.
    assert eng.usage.num_generated_tokens == sum(r["usage"]["num_generated_tokens"] for r in missing)
    new = {(r["method"], r["problem_id"]): without_wall_time(r) for r in map(json.loads, resumed[len(keep) :])}
    assert new == {(r["method"], r["problem_id"]): without_wall_time(r) for r in missing}
