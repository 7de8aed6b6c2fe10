"""The budget lives in one place: each strategy's params class holds `n`, `at_budget(n)` is the same strategy at
another budget, and neither `solve` nor the strategy's `SamplingParams` carries one."""

from __future__ import annotations

import inspect
from dataclasses import fields, is_dataclass

import pytest

from testtime import ValidationError
from testtime.engines import SamplingParams, ScriptedEngine
from testtime.eval import EvalConfig
from testtime.scorers import ScriptedScorer
from testtime.strategies import (
    STRATEGIES,
    MajorityVote,
    Policy,
    PolicyEntry,
    SamplingStrategyParams,
    SpeculativeRejection,
    SpeculativeRejectionParams,
    make_strategy,
)
from testtime.tasks import Problem

P = Problem(id="p", question="q", answer="5")


def engine() -> ScriptedEngine:
    return ScriptedEngine(lambda request, params, index: "The answer is \\boxed{5}.")


def scorer() -> ScriptedScorer:
    return ScriptedScorer(lambda question, steps: [0.5] * len(steps))


POLICY = Policy(entries=[PolicyEntry(level=lv, n=8, strategy="majority") for lv in (1, 2)], edges=[0.5], num_levels=2)


def build(name: str, **kw):
    return make_strategy(name, engine(), scorer(), policy=POLICY, **kw)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_declares_a_params_class_with_n(name):
    cls = STRATEGIES[name]
    assert is_dataclass(cls.params_class) and "n" in {f.name for f in fields(cls.params_class)}
    assert isinstance(build(name).params, cls.params_class)


@pytest.mark.parametrize("name", [name for name, cls in STRATEGIES.items() if cls.fixed_budget is None])
def test_at_budget_is_a_copy_at_the_new_n_and_leaves_the_original_alone(name):
    strategy = build(name)
    before = strategy.params
    eight = strategy.at_budget(8)
    assert type(eight) is type(strategy) and eight is not strategy
    assert eight.params.n == 8 and eight.params == type(before)(**{**vars(before), "n": 8})  # every other knob kept
    assert strategy.params is before and strategy.params.n != 8
    assert (eight.engine, eight.scorer, eight.sampling, eight.seed) == (strategy.engine, strategy.scorer, strategy.sampling, strategy.seed)


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("n", [0, -1, "x", True, 2.0], ids=["zero", "negative", "string", "bool", "float"])
def test_an_invalid_budget_is_a_validation_error_naming_n(name, n):
    strategy = build(name)
    with pytest.raises(ValidationError, match=r"`n` must be") as info:
        strategy.at_budget(n)
    assert info.value.parameter == "n"


def test_greedy_runs_at_its_fixed_budget():
    greedy = build("greedy")
    assert greedy.params.n == 1 and greedy.fixed_budget == 1
    with pytest.raises(ValidationError, match=r"greedy decodes one candidate \(more would all be the same\): `n` must be 1, got 4"):
        greedy.at_budget(4)
    # Callers that build every strategy at one budget (serve, `testtime solve`) get greedy at its own.
    assert build("greedy", n=4).params.n == 1


def test_spr_keeps_auto():
    spr = SpeculativeRejection(engine(), scorer(), params=SpeculativeRejectionParams(kv_budget=4096))
    assert spr.at_budget("auto").params.n == "auto"
    with pytest.raises(ValidationError, match="`n='auto'` sizes the batch from memory; set `kv_budget` too"):
        SpeculativeRejection(engine(), scorer()).at_budget("auto")


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_solve_takes_no_budget(name):
    cls = STRATEGIES[name]
    assert list(inspect.signature(cls.solve).parameters) == ["self", "problems"]
    assert list(inspect.signature(cls.solve_batch).parameters) == ["self", "problems"]
    assert list(inspect.signature(cls.rows_needed).parameters) == ["self"]


def test_the_budget_is_params_n():
    strategy = MajorityVote(engine(), params=SamplingStrategyParams(n=3))
    with pytest.raises(TypeError):
        strategy.solve(P, 4)
    assert len(strategy.solve(P)[0].candidates) == 3
    assert len(strategy.at_budget(5).solve(P)[0].candidates) == 5


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_sampling_with_a_budget_is_refused(name):
    with pytest.raises(ValidationError, match=r"`n` of a strategy's sampling must be 1, got 4: the budget is the params' `n` .* or `strategy.at_budget\(4\)`") as info:
        build(name, sampling=SamplingParams(n=4))
    assert info.value.parameter == "n"


def test_make_strategy_takes_n_in_the_spec_or_as_a_keyword_once():
    spec = build("majority:n=8")
    assert (spec.params.n, spec.name) == (8, "majority:n=8")
    keyword = build("beam:beam_width=2", n=6)
    assert (keyword.params.n, keyword.params.beam_width, keyword.name) == (6, 2, "beam:beam_width=2")
    assert (build("weighted", n=3).params.n, build("weighted", n=3).name) == (3, "weighted")
    with pytest.raises(ValidationError, match=r"strategy 'majority': the budget `n` is given twice \(8 in its params, 4 as the budget\); give it once"):
        build("majority:n=8", n=4)
    with pytest.raises(ValidationError, match=r"`n` must be a multiple of `beam_width` \(4\), got 6; use n = 4, 8, 16"):
        build("beam", n=6)


def test_eval_budgets_come_from_its_n_only():
    with pytest.raises(ValidationError, match=r"strategy 'majority:n=8' sets `n`; an eval's budgets are --n \(drop n= from the spec\)"):
        EvalConfig(strategies=["majority:n=8"], n=[1, 2])


def test_a_copy_at_another_budget_records_its_own_runs():
    """What a strategy records per problem (SpR's rounds, optimal's choices) lands on the copy that ran, also when
    its problems run as programs on the scheduler (copies of the copy, absorbed back into it)."""
    from _tiny import crc_scorer, make_llama, make_tokenizer

    from testtime import TransformersEngine

    tok = make_tokenizer()
    tiny = TransformersEngine(make_llama(tok), tokenizer=tok, seed=0)
    problems = [Problem(id="a", question="Tom has 5 apples"), Problem(id="b", question="hello world")]
    sampling = SamplingParams(temperature=1.0, max_tokens=12)
    spr = SpeculativeRejection(tiny, crc_scorer(), params=SpeculativeRejectionParams(n=4, decision_tokens=[4]), sampling=sampling)
    two = spr.at_budget(2)
    two.solve(problems)
    assert sorted(two.rounds) == ["a", "b"] and two.rounds["a"][0].num_live == 2 and spr.rounds == {}
    base = make_strategy("optimal", tiny, crc_scorer(), sampling=sampling, policy=POLICY)
    optimal = base.at_budget(8)
    optimal.solve(problems)
    assert [c["problem_id"] for c in optimal.choices] == ["a", "b"] and base.choices == []
