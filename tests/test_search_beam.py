"""Beam search step by step on a scripted engine and scorer: who is kept, who is duplicated, when it stops,
what it returns; the lookahead rule, duplicates, batching across problems and compute accounting."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from _search_fakes import Plan, by_step, texts
from _tiny import crc_scorer

from testtime import ValidationError
from testtime.engines import SamplingParams, ScriptedEngine
from testtime.scorers import ScriptedScorer
from testtime.strategies import BeamSearch, BeamSearchParams, _step_search, get_strategy
from testtime.tasks import Problem

P = Problem(id="p1", question="q1", answer="7")


def test_keeps_best_n_over_m_and_gives_each_m_children():
    plan = Plan(texts={8: "\\boxed{3}", 9: "\\boxed{7}", 10: "\\boxed{7}", 11: "\\boxed{5}"}, final={8, 9, 10, 11})
    scores = {"s0": 0.1, "s1": 0.9, "s2": 0.5, "s3": 0.7, "s4": 0.2, "s5": 0.3, "s6": 0.8, "s7": 0.6, "\\boxed{3}": 0.95, "\\boxed{7}": 0.4, "\\boxed{5}": 0.1}
    scorer = by_step(scores)
    res = BeamSearch(ScriptedEngine(plan), scorer, params=BeamSearchParams(n=4, beam_width=2)).solve(P)[0]
    calls = [texts(c) for c in scorer.calls]
    assert calls[0] == ["s0\n\n", "s1\n\n", "s2\n\n", "s3\n\n"]
    # s1 (0.9) and s3 (0.7) kept, two children each, in row order.
    assert calls[1] == ["s1\n\ns4\n\n", "s1\n\ns5\n\n", "s3\n\ns6\n\n", "s3\n\ns7\n\n"]
    # s3-s6 (0.8) and s3-s7 (0.6) kept.
    assert calls[2] == ["s3\n\ns6\n\n\\boxed{3}", "s3\n\ns6\n\n\\boxed{7}", "s3\n\ns7\n\n\\boxed{7}", "s3\n\ns7\n\n\\boxed{5}"]
    assert len(calls) == 3  # all four finished: n completed, the search stops
    assert [c.text for c in res.candidates] == calls[2]
    assert [c.score for c in res.candidates] == [0.95, 0.4, 0.4, 0.1]
    assert res.candidates[0].scores == [0.7, 0.8, 0.95]
    assert res.selected == 0 and res.answer == "3"
    assert all(c.finish_reason == "eos" for c in res.candidates)


def test_weighted_selection_votes_over_completed_beams():
    plan = Plan(texts={4: "\\boxed{3}", 5: "\\boxed{7}", 6: "\\boxed{7}", 7: "\\boxed{5}"}, final={4, 5, 6, 7})
    scorer = by_step({"\\boxed{3}": 0.9, "\\boxed{7}": 0.5, "\\boxed{5}": 0.1}, default=0.5)
    res = BeamSearch(ScriptedEngine(plan), scorer, params=BeamSearchParams(n=4, beam_width=2, select="weighted")).solve(P)[0]
    assert res.answer == "7" and res.selected == 1  # 0.5 + 0.5 beats 0.9
    res = BeamSearch(ScriptedEngine(Plan(texts=plan.texts, final=plan.final)), scorer, params=BeamSearchParams(n=4, beam_width=2, select="majority")).solve(P)[0]
    assert res.answer == "7"


def test_stops_once_n_beams_completed():
    # Both children of s1 finish at step 2 (pool: 2); s3's children go on; at step 3 two more finish (pool: 4 = n),
    # so the search stops although two beams are still alive.
    plan = Plan(texts={4: "\\boxed{1}", 5: "\\boxed{2}", 8: "\\boxed{3}", 9: "\\boxed{4}"}, final={4, 5, 8, 9})
    scorer = by_step({"s1": 0.9, "s3": 0.8, "s6": 0.5, "s7": 0.4}, default=0.2)
    eng = ScriptedEngine(plan)
    res = BeamSearch(eng, scorer, params=BeamSearchParams(n=4, beam_width=2)).solve(P)[0]
    calls = [texts(c) for c in scorer.calls]
    assert calls[1] == ["s1\n\n\\boxed{1}", "s1\n\n\\boxed{2}", "s3\n\ns6\n\n", "s3\n\ns7\n\n"]
    # Only s6 and s7 are alive: 2 <= n/M, so both are kept and each gets n/2 = 2 children.
    assert calls[2] == ["s3\n\ns6\n\n\\boxed{3}", "s3\n\ns6\n\n\\boxed{4}", "s3\n\ns7\n\ns10\n\n", "s3\n\ns7\n\ns11\n\n"]
    assert len(calls) == 3
    assert [c.answer for c in res.candidates] == ["1", "2", "3", "4"]
    assert next(plan.k) == 12  # nothing generated after the stop


def test_stops_when_no_beam_is_alive():
    plan = Plan(texts={k: f"\\boxed{{{k}}}" for k in range(4)}, final=range(4))
    res = BeamSearch(ScriptedEngine(plan), by_step({"\\boxed{2}": 0.9}), params=BeamSearchParams(n=4, beam_width=2)).solve(P)[0]
    assert len(res.candidates) == 4 and res.answer == "2"


def test_last_iteration_generates_to_the_end_unscored():
    plan = Plan(texts={4: "\\boxed{9}", 5: "\\boxed{8}"}, final={4, 5})
    scorer = by_step({"s1": 0.9})
    eng = ScriptedEngine(plan)
    res = BeamSearch(eng, scorer, params=BeamSearchParams(n=2, beam_width=2, max_iterations=2)).solve(P)[0]
    calls = [texts(c) for c in scorer.calls]
    assert calls[0] == ["s0\n\n", "s1\n\n"]
    # Iteration 2 is the last: s1's two children run through s2/s3 (a boundary, not scored) to the end.
    assert calls[1] == ["s1\n\ns2\n\n\\boxed{9}", "s1\n\ns3\n\n\\boxed{8}"]
    assert len(calls) == 2 and [c.answer for c in res.candidates] == ["9", "8"]


def test_lookahead_text_is_what_ranks_the_step_and_is_not_kept():
    # Sampled steps alone prefer s0; their greedy lookaheads L0 / L1 prefer s1. The reference ranks by the
    # sampled step and would keep s0; we rank by the lookahead and keep s1, without its lookahead text.
    plan = Plan(texts={2: "\\boxed{1}", 3: "\\boxed{2}"}, final={2, 3})
    scorer = by_step({"s0": 0.9, "s1": 0.1, "L0": 0.2, "L1": 0.7})
    eng = ScriptedEngine(plan)
    res = BeamSearch(eng, scorer, params=BeamSearchParams(n=2, beam_width=2, lookahead=1)).solve(P)[0]
    calls = [texts(c) for c in scorer.calls]
    assert calls[0] == ["s0\n\nL0\n\n", "s1\n\nL1\n\n"]
    assert calls[1] == ["s1\n\n\\boxed{1}", "s1\n\n\\boxed{2}"]  # finished: no lookahead, own text
    assert [c.text for c in res.candidates] == calls[1]
    greedy = [p for _, p in eng.calls if p.temperature == 0]
    assert len(greedy) == 2 and all(p.n == 1 for p in greedy)
    # Lookahead tokens are generated tokens too.
    assert res.usage.num_generated_tokens == eng.usage.num_generated_tokens


def test_filter_duplicates_keeps_distinct_beams():
    params = dict(texts={0: "x", 1: "x", 2: "y", 3: "z", **{k: f"\\boxed{{{k}}}" for k in range(4, 8)}}, final=range(4, 8))
    scorer = by_step({"x": 0.9, "y": 0.5, "z": 0.1})
    BeamSearch(ScriptedEngine(Plan(**params)), scorer, params=BeamSearchParams(n=4, beam_width=2)).solve(P)
    assert [t.split("\n\n")[0] for t in texts(scorer.calls[1])] == ["x", "x", "x", "x"]
    scorer = by_step({"x": 0.9, "y": 0.5, "z": 0.1})
    BeamSearch(ScriptedEngine(Plan(**params)), scorer, params=BeamSearchParams(n=4, beam_width=2, filter_duplicates=True)).solve(P)
    assert [t.split("\n\n")[0] for t in texts(scorer.calls[1])] == ["x", "x", "y", "y"]


def test_ties_keep_the_lowest_row():
    plan = Plan(texts={k: f"\\boxed{{{k}}}" for k in range(4, 8)}, final=range(4, 8))
    scorer = by_step({}, default=0.5)
    BeamSearch(ScriptedEngine(plan), scorer, params=BeamSearchParams(n=4, beam_width=2)).solve(P)
    assert [t.split("\n\n")[0] for t in texts(scorer.calls[1])] == ["s0", "s0", "s1", "s1"]


def test_reductions_rank_partial_paths():
    # After step 2, s1's children have the best last steps but s1 itself was weak (0.3): "last" keeps them,
    # "min" keeps s0's children.
    scores = {"s0": 0.6, "s1": 0.3, "s2": 0.1, "s3": 0.1, "s4": 0.5, "s5": 0.4, "s6": 0.9, "s7": 0.8}
    for reduction, kept in [("last", ["s1\n\ns6", "s1\n\ns6", "s1\n\ns7", "s1\n\ns7"]), ("min", ["s0\n\ns4", "s0\n\ns4", "s0\n\ns5", "s0\n\ns5"])]:
        plan = Plan(texts={k: f"\\boxed{{{k}}}" for k in range(8, 12)}, final=range(8, 12))
        scorer = by_step(scores, default=0.1)
        BeamSearch(ScriptedEngine(plan), scorer, params=BeamSearchParams(n=4, beam_width=2, reduction=reduction)).solve(P)
        assert texts(scorer.calls[1]) == ["s0\n\ns4\n\n", "s0\n\ns5\n\n", "s1\n\ns6\n\n", "s1\n\ns7\n\n"]
        assert [t.rsplit("\n\n", 1)[0] for t in texts(scorer.calls[2])] == kept


def seeded_engine(depth: int = 2) -> ScriptedEngine:
    """Step text from the row's own seed: results independent of which problems share the batch."""

    def handler(request, params, index):
        d = request.partial.count("\n\n")
        label = params.seed % 997
        return f"\\boxed{{{label % 10}}}" if d >= depth else f"t{label}\n\nmore"

    return ScriptedEngine(handler)


def test_one_engine_call_and_one_scorer_call_per_step_for_all_problems():
    problems = [P, Problem(id="p2", question="q2", answer="3"), Problem(id="p3", question="q3", answer="1")]
    eng, scorer = seeded_engine(), crc_scorer()
    batched = BeamSearch(eng, scorer, params=BeamSearchParams(n=4, beam_width=2)).solve(problems)
    assert len(scorer.calls) == 3 and all(len(c) == 3 for c in scorer.calls)  # 3 steps, all problems each time
    assert eng.usage.num_calls == 3
    assert [r.problem_id for r in batched] == ["p1", "p2", "p3"]
    for p, r in zip(problems, batched, strict=True):
        alone = BeamSearch(seeded_engine(), crc_scorer(), params=BeamSearchParams(n=4, beam_width=2)).solve(p)[0]
        assert [c.text for c in alone.candidates] == [c.text for c in r.candidates]
        assert alone.answer == r.answer
    # max_rows = n: one problem at a time, same results.
    eng2, scorer2 = seeded_engine(), crc_scorer()
    one_by_one = BeamSearch(eng2, scorer2, params=BeamSearchParams(n=4, beam_width=2, max_rows=4)).solve(problems)
    assert [[c.text for c in r.candidates] for r in one_by_one] == [[c.text for c in r.candidates] for r in batched]
    assert len(scorer2.calls) == 9


def test_problems_join_the_batch_as_others_leave():
    # max_rows 8, n 4: two problems start; the third joins when the first two finish.
    problems = [Problem(id=f"p{i}", question=f"q{i}") for i in range(3)]
    scorer = crc_scorer()
    BeamSearch(seeded_engine(depth=1), scorer, params=BeamSearchParams(n=4, beam_width=2, max_rows=8)).solve(problems)
    assert [[r.question for r in c] for c in scorer.calls] == [["q0", "q1"], ["q0", "q1"], ["q2"], ["q2"]]


def test_usage_is_charged_per_problem_and_adds_up(monkeypatch):
    clock = iter(range(0, 1000, 6))  # each perf_counter() call advances the search's clock by 6 s
    monkeypatch.setattr(_step_search, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    problems = [P, Problem(id="p2", question="a longer question two", answer="3")]
    eng, scorer = seeded_engine(), crc_scorer()
    res = BeamSearch(eng, scorer, params=BeamSearchParams(n=4, beam_width=2)).solve(problems)
    assert sum(r.usage.num_generated_tokens for r in res) == eng.usage.num_generated_tokens
    assert abs(sum(r.usage.num_scored_tokens for r in res) - scorer.usage.num_tokens) <= 1
    assert abs(sum(r.usage.num_prefill_tokens for r in res) - eng.usage.num_prefill_tokens) <= 2
    for r in res:
        assert r.usage.num_engine_calls == 3 and r.usage.num_scorer_calls == 3
        assert r.usage.num_compute_tokens == r.usage.num_generated_tokens + r.usage.num_scored_tokens
    assert [r.usage.wall_time for r in res] == [3.0, 3.0]  # the batch's 6 s, split evenly over its problems


def test_fixed_token_steps():
    eng = ScriptedEngine(lambda r, p, i: "abcdefghij"[len(r.partial) :])
    scorer = ScriptedScorer(lambda q, steps: [0.5] * len(steps))
    res = BeamSearch(eng, scorer, params=BeamSearchParams(n=2, beam_width=2, step_tokens=4)).solve(P)[0]
    assert [len(t) for t in texts(scorer.calls[0])] == [4, 4]
    assert len(scorer.calls) == 3 and res.candidates[0].text == "abcdefghij"


def test_registered_and_refuses_other_params():
    from testtime.strategies import SamplingStrategyParams

    assert get_strategy("beam") is BeamSearch and BeamSearch.params_class is BeamSearchParams
    with pytest.raises(ValidationError, match="strategy 'beam' takes BeamSearchParams, got SamplingStrategyParams"):
        BeamSearch(seeded_engine(), crc_scorer(), params=SamplingStrategyParams(n=8, reduction="min"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param({"n": 6}, r"`n` must be a multiple of `beam_width` \(4\), got 6", id="n-multiple"),
        pytest.param({"beam_width": 0}, r"`beam_width` must be an integer >= 1, got 0", id="width"),
        pytest.param({"lookahead": -1}, r"`lookahead` must be an integer >= 0, got -1", id="lookahead"),
        pytest.param({"select": "vote"}, r"`select` must be one of best, weighted, majority, got 'vote'", id="select"),
        pytest.param({"reduction": "max"}, r"`reduction` must be one of last, min, prod, mean", id="reduction"),
        pytest.param({"max_iterations": 0}, r"`max_iterations` must be an integer >= 1, got 0", id="iterations"),
        pytest.param({"step_separator": ""}, r"`step_separator` must be a non-empty string", id="separator"),
    ],
)
def test_bad_params(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        BeamSearchParams(**kwargs)


def test_budget_must_be_a_multiple_of_the_width():
    with pytest.raises(ValidationError, match=r"`n` must be a multiple of `beam_width` \(4\), got 2; use n = 4, 8, 16"):
        BeamSearch(seeded_engine(), crc_scorer()).at_budget(2)
    with pytest.raises(ValidationError, match="needs a scorer"):
        BeamSearch(seeded_engine())


def test_length_limited_beams_complete():
    eng = ScriptedEngine(lambda r, p, i: "x" * 50)  # never a step boundary
    scorer = ScriptedScorer(lambda q, steps: [0.5] * len(steps))
    res = BeamSearch(eng, scorer, params=BeamSearchParams(n=2, beam_width=2), sampling=SamplingParams(max_tokens=10)).solve(P)[0]
    assert [c.finish_reason for c in res.candidates] == ["length", "length"] and res.answer is None


def test_long_steps_are_cut_at_max_step_tokens():
    full = "x" * 10 + "\n\n" + "yyy"
    eng = ScriptedEngine(lambda r, p, i: full[len(r.partial) :])
    scorer = ScriptedScorer(lambda q, steps: [0.5] * len(steps))
    res = BeamSearch(eng, scorer, params=BeamSearchParams(n=2, beam_width=2, max_step_tokens=4)).solve(P)[0]
    # 4 + 4 tokens cut mid-step, then "xx\n\n" ends at the blank line, then "yyy" ends the solution.
    assert [texts(c)[0] for c in scorer.calls] == ["xxxx", "xxxxxxxx", "x" * 10 + "\n\n", full]
    assert res.candidates[0].text == full
    scorer = ScriptedScorer(lambda q, steps: [0.5] * len(steps))
    BeamSearch(ScriptedEngine(lambda r, p, i: full[len(r.partial) :]), scorer, params=BeamSearchParams(n=2, beam_width=2, max_step_tokens=0)).solve(P)
    assert [texts(c)[0] for c in scorer.calls] == ["x" * 10 + "\n\n", full]


def test_eval_runs_the_searches_once_per_budget(tmp_path):
    from testtime.eval import EvalConfig, run_eval

    problems = [Problem(id=f"p{i}", question=f"q{i}", answer="7") for i in range(2)]
    eng, scorer = seeded_engine(), crc_scorer()
    cfg = EvalConfig(strategies=["beam", "dvts", "pf"], n=[4, 8], out=str(tmp_path / "run"))
    report = run_eval(cfg, engine=eng, scorer=scorer, problems=problems, progress=False, log=lambda *_: None)
    assert [(r.strategy, r.n) for r in report.summary] == [("beam", 4), ("beam", 8), ("dvts", 4), ("dvts", 8), ("pf", 4), ("pf", 8)]
    for r in report.summary:
        assert r.num_rows == 2 and r.mean_compute_tokens > r.mean_generated_tokens > 0
    beam8 = next(r for r in report.summary if r.strategy == "beam" and r.n == 8)
    beam4 = next(r for r in report.summary if r.strategy == "beam" and r.n == 4)
    assert beam8.mean_generated_tokens > beam4.mean_generated_tokens  # the search really ran at each budget
    assert (tmp_path / "run" / "accuracy_vs_compute.png").exists()
