"""Sampling strategies on a scripted engine and scorer: who is selected, tie rules, seeds, accounting."""

from __future__ import annotations

import pytest

from testtime import ValidationError
from testtime.engines import SamplingParams, ScriptedEngine
from testtime.scorers import ScriptedScorer
from testtime.strategies import (
    BestOfN,
    Candidate,
    MajorityVote,
    SamplingStrategyParams,
    WeightedBestOfN,
    majority_vote,
    make_strategy,
    weighted_vote,
)
from testtime.tasks import Problem


def solution(answer: str, steps: int = 2) -> str:
    body = "".join(f"Step {i + 1}: work.\n\n" for i in range(steps))
    return body + f"Therefore, the final answer is: $\\boxed{{{answer}}}$."


def engine_answering(answers_by_problem: dict[str, list[str]]) -> ScriptedEngine:
    """Completion i of a problem answers answers_by_problem[question][i]."""

    def handler(request, params, index):
        question = request.messages[-1]["content"]
        return solution(answers_by_problem[question][index])

    return ScriptedEngine(handler)


def scorer_by_answer(scores: dict[str, float]) -> ScriptedScorer:
    def fn(question, steps):
        final = steps[-1] if steps else ""
        for ans, s in scores.items():
            if "{" + ans + "}" in final:
                return [0.5] * (len(steps) - 1) + [s]
        return [0.0] * len(steps)

    return ScriptedScorer(fn)


P = Problem(id="p1", question="q1", answer="5")
PARAMS = SamplingStrategyParams(n=6)


def test_majority_picks_most_frequent_class_and_its_first_member():
    eng = engine_answering({"q1": ["3", "5", "5", "7", "3", "5"]})
    res = MajorityVote(eng, params=PARAMS).solve(P)[0]
    assert res.answer == "5" and res.selected == 1
    assert [c.answer for c in res.candidates] == ["3", "5", "5", "7", "3", "5"]
    assert res.candidates[0].score is None  # votes only: nothing scored


def test_majority_merges_equivalent_answers():
    eng = engine_answering({"q1": ["2", "0.5", "\\frac{1}{2}", "2", "1/2"]})
    res = MajorityVote(eng, params=SamplingStrategyParams(n=5)).solve(P)[0]
    assert res.answer == "0.5" and res.selected == 1


def test_majority_tie_goes_to_the_class_seen_first():
    cands = [Candidate(index=i, answer=a) for i, a in enumerate(["7", "3", "3", "7", None])]
    assert majority_vote(cands) == 0
    assert majority_vote([Candidate(answer=None)]) is None


def test_best_of_n_picks_highest_score_lowest_index_on_ties():
    eng = engine_answering({"q1": ["3", "5", "7", "9"]})
    scorer = scorer_by_answer({"3": 0.2, "5": 0.9, "7": 0.9, "9": 0.1})
    res = BestOfN(eng, scorer, params=SamplingStrategyParams(n=4)).solve(P)[0]
    assert res.selected == 1 and res.answer == "5"
    assert [c.score for c in res.candidates] == [0.2, 0.9, 0.9, 0.1]
    assert res.candidates[1].scores == [0.5, 0.5, 0.9]  # per-step scores kept; "last" reduction used


def test_best_of_n_reductions():
    eng = engine_answering({"q1": ["3", "5"]})
    scorer = scorer_by_answer({"3": 0.6, "5": 0.7})  # steps score 0.5, 0.5, final
    res = BestOfN(eng, scorer, params=SamplingStrategyParams(n=2, reduction="min")).solve(P)[0]
    assert [c.score for c in res.candidates] == [0.5, 0.5] and res.selected == 0
    res = BestOfN(eng, scorer, params=SamplingStrategyParams(n=2, reduction="prod")).solve(P)[0]
    assert res.candidates[1].score == pytest.approx(0.25 * 0.7)


def test_weighted_sums_scores_per_class():
    eng = engine_answering({"q1": ["9", "5", "5", "7"]})
    scorer = scorer_by_answer({"9": 0.9, "5": 0.5, "7": 0.1})
    res = WeightedBestOfN(eng, scorer, params=SamplingStrategyParams(n=4)).solve(P)[0]
    assert res.answer == "5" and res.selected == 1  # 0.5 + 0.5 beats 0.9
    assert weighted_vote([Candidate(answer="1", score=0.4), Candidate(answer="2", score=0.3), Candidate(answer="2", score=0.6)]) == 2


def test_greedy_asks_for_temperature_zero_once():
    eng = engine_answering({"q1": ["5"]})
    res = make_strategy("greedy", eng, n=8).solve([P])[0]  # a budget-free baseline: runs at its fixed budget 1
    assert len(res.candidates) == 1 and res.answer == "5"
    (_, params), = eng.calls
    assert params.temperature == 0 and params.n == 1


def test_scorer_required():
    with pytest.raises(ValidationError, match="strategy 'bon' ranks candidates and needs a scorer"):
        BestOfN(engine_answering({}))


def test_problem_seeds_do_not_depend_on_batch():
    seen = {}

    def handler(request, params, index):
        seen.setdefault(request.messages[-1]["content"], []).append(params.seed)
        return solution("1")

    eng = ScriptedEngine(handler)
    strat = MajorityVote(eng, params=SamplingStrategyParams(n=3), seed=11)
    strat.solve([Problem(id="a", question="qa"), Problem(id="b", question="qb")])
    first = dict(seen)
    seen.clear()
    strat.solve([Problem(id="b", question="qb")])
    assert seen["qb"] == first["qb"] and first["qa"] != first["qb"]
    assert len(set(first["qa"])) == 3  # each completion has its own seed


def test_usage_accounting_is_exact_for_generated_tokens():
    eng = engine_answering({"q1": ["3", "5"], "q2": ["1", "2"]})
    scorer = scorer_by_answer({"3": 0.1})
    problems = [P, Problem(id="p2", question="q2", answer="2")]
    res = WeightedBestOfN(eng, scorer, params=SamplingStrategyParams(n=2)).solve(problems)
    for r in res:
        assert r.usage.num_generated_tokens == sum(len(c.text) for c in r.candidates)  # 1 token per char
        assert r.usage.num_engine_calls == 1 and r.usage.num_scorer_calls == 1
    assert sum(r.usage.num_scored_tokens for r in res) == scorer.usage.num_tokens
    assert sum(r.usage.num_prefill_tokens for r in res) == eng.usage.num_prefill_tokens


def test_choose_applies_the_rule_to_a_prefix():
    eng = engine_answering({"q1": ["3", "5", "5", "7"]})
    strat = MajorityVote(eng, params=SamplingStrategyParams(n=4))
    sampled = strat.sample([P])[0]
    assert strat.choose(sampled, 1).answer == "3"
    assert strat.choose(sampled, 3).answer == "5"
    assert len(strat.choose(sampled, 2).candidates) == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param({"n": 0}, r"`n` must be an integer >= 1, got 0", id="n"),
        pytest.param({"reduction": "max"}, r"`reduction` must be one of last, min, prod, mean, got 'max'", id="reduction"),
    ],
)
def test_bad_strategy_params(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        SamplingStrategyParams(**kwargs)


def test_max_tokens_truncation_reports_length():
    eng = ScriptedEngine(lambda r, p, i: "x" * 100)
    res = MajorityVote(eng, params=SamplingStrategyParams(n=1), sampling=SamplingParams(max_tokens=10)).solve(P)[0]
    assert res.candidates[0].finish_reason == "length" and res.candidates[0].num_tokens == 10
