"""Compute-optimal selection on scripted engines: learning the policy from stored runs, the policy file round
trip, online dispatch by predicted level, and budget accounting (probe samples count and are reused)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pytest

from testtime import DataError, UnknownNameError, ValidationError
from testtime.cli import main
from testtime.engines import ScriptedEngine
from testtime.eval import EvalConfig, run_eval
from testtime.eval.difficulty import compute_difficulty
from testtime.eval.optimize import candidate_variants, format_policy, extra_run_rows, in_sample_accuracy, learn_policy, measure_variants, merge_rows
from testtime.scorers import ScriptedScorer
from testtime.strategies import STRATEGIES, OptimalStrategy, Policy, PolicyEntry, SolveResult, Strategy, Usage
from testtime.strategies._base import SamplingStrategyParams, as_problem_list
from testtime.tasks import Problem

# Five kinds of problem, two of each; candidate i of a kind answers KINDS[kind][i]. Gold is "5".
# The scorer likes "9" best, then "5": it is right on B, misleading on A.
KINDS = {
    "A": ["5", "9", "5", "5"],  # majority right; weighted picks 9 (1.0 > 0.3 * 3): the trap
    "B": ["3", "5", "3", "7"],  # majority picks 3; weighted 5 (0.3 > 0.1 * 2): the scorer helps
    "C": ["5", "5", "5", "5"],  # everything right
    "D": ["3", "3", "7", "7"],  # nothing right
    "E": ["9", "9", "9", "9"],  # nothing right, and the scorer loves it
}
SCORE = {"9": 1.0, "5": 0.3}
PROBLEMS = [Problem(id=f"{k}{j}", question=f"{k}{j}", answer="5") for k in KINDS for j in range(2)]


def answer_text(answer: str) -> str:
    return f"Step 1: think.\n\nTherefore, the final answer is: $\\boxed{{{answer}}}$."


def handler(request, params, index):
    return answer_text(KINDS[request.messages[-1]["content"][0]][index % 4])


def scorer():
    return ScriptedScorer(lambda q, steps: [SCORE.get(steps[-1].split("{")[-1].rstrip("}$."), 0.1)])


def dev_rows(tmp_path):
    cfg = EvalConfig(task="scripted", strategies=["majority", "weighted"], n=[2, 4], out=str(tmp_path / "dev"), batch_problems=5)
    return run_eval(cfg, engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None).rows


def test_learned_policy_picks_per_level_and_breaks_ties_by_pooled_accuracy_then_compute(tmp_path):
    rows = dev_rows(tmp_path)
    diff = compute_difficulty(rows, num_probe=2)
    # Mean probe score over the first two samples: E 1.0, A 0.65, C 0.3, B 0.2, D 0.1 -> levels 1..5.
    assert diff.levels("predicted") == {"A0": 2, "A1": 2, "B0": 4, "B1": 4, "C0": 3, "C1": 3, "D0": 5, "D1": 5, "E0": 1, "E1": 1}
    policy = learn_policy(rows, diff, strategies=["majority", "weighted"], budgets=[2, 4], task="scripted", split="dev")
    pick = {(e.level, e.n): (e.strategy, e.params, e.accuracy, e.num_problems) for e in policy.entries}
    assert pick[(2, 4)] == ("majority", {}, 1.0, 2)  # the trap: votes beat the misleading scorer
    assert pick[(4, 4)] == ("weighted", {"reduction": "last"}, 1.0, 2)  # reductions tie on one-step scores: first listed
    # Level 3: both 1.0; pooled at N=4 both 4/10; majority costs fewer tokens (nothing scored).
    assert pick[(3, 4)][0] == "majority"
    # At N=2, B's first two candidates are 3 and 5: majority ties -> "3" (first class), weighted picks 5.
    assert pick[(4, 2)][:3] == ("weighted", {"reduction": "last"}, 1.0)
    e = policy.entry(4, 4)
    assert [r["strategy"] for r in e.ranking] == ["weighted"] * 4 + ["majority"] and e.ranking[-1]["accuracy"] == 0.0
    assert e.run_n == 4 and (round(e.ci_low, 3), round(e.ci_high, 3)) == (0.342, 1.0)
    # In-sample: the policy gets A, B, C right at N=4 (6/10); each single strategy only 4/10.
    acc, singles = in_sample_accuracy(policy, rows, diff)[4]
    assert acc == pytest.approx(0.6) and singles == {"majority": pytest.approx(0.4), "weighted": pytest.approx(0.4)}
    table = format_policy(policy)
    assert "weighted[reduction=last] 1.00 (2)" in table and table.count("\n") == 6


def test_few_problems_per_level_defer_to_the_pooled_winner(tmp_path):
    rows = dev_rows(tmp_path)
    diff = compute_difficulty(rows, num_probe=2)
    # Re-grade the D problems (level 5) as if their gold were 7, which the scorer now likes best: weighted
    # gets them right, majority's 3-vs-7 tie still goes to 3. Weighted becomes the pooled winner at N=4.
    for r in rows:
        if r["problem_id"].startswith("D"):
            for c in r["candidates"]:
                c["correct"] = c["answer"] == "7"
                if c["correct"]:
                    c["score"], c["scores"] = 1.0, [1.0]
    raw = learn_policy(rows, diff, strategies=["majority", "weighted"], budgets=[4], prior_strength=0, skip_probe="never")
    shrunk = learn_policy(rows, diff, strategies=["majority", "weighted"], budgets=[4], prior_strength=8, skip_probe="never")
    pooled = {r["strategy"]: r["pooled_accuracy"] for r in shrunk.entry(2, 4).ranking}
    assert pooled == {"majority": pytest.approx(0.4), "weighted": pytest.approx(0.6)}
    # Level 2 (the A trap): majority 2 of 2, weighted 0 of 2. Alone, that decides; shrunk by 8 pooled
    # pseudo-problems it still does: (2 + 8 * 0.4) / 10 = 0.52 > (0 + 8 * 0.6) / 10 = 0.48.
    assert raw.entry(2, 4).strategy == "majority" and shrunk.entry(2, 4).strategy == "majority"
    top = shrunk.entry(2, 4).ranking
    assert [round(r["shrunk_accuracy"], 3) for r in top] == [0.52, 0.48, 0.48, 0.48, 0.48]
    # With 12 pseudo-problems, two problems no longer outweigh the pooled lead: (2 + 4.8) / 14 < 7.2 / 14.
    assert learn_policy(rows, diff, strategies=["majority", "weighted"], budgets=[4], prior_strength=12, skip_probe="never").entry(2, 4).strategy == "weighted"
    assert shrunk.prior_strength == 8.0 and raw.prior_strength == 0.0
    with pytest.raises(ValidationError, match="prior_strength"):
        learn_policy(rows, diff, strategies=["majority"], budgets=[4], prior_strength=-1)


def test_auto_prior_strength_is_chosen_by_leave_one_problem_out_accuracy(tmp_path):
    rows = dev_rows(tmp_path)
    policy = learn_policy(rows, compute_difficulty(rows, num_probe=2), strategies=["majority", "weighted"], budgets=[2, 4], prior_strength="auto")
    # Each level holds two problems of one kind, so a held-out problem is answered by what its twin chose: A by
    # majority, B by weighted, C either: 6 of 10 at N=2 and at N=4. With a strong prior the pooled winner of
    # the other nine answers instead, which is the trap's loser on A and on B: 2 of 10.
    cv = policy.prior_strength_cv
    assert cv["0"] == cv["8"] == pytest.approx(0.6) and cv["16"] == cv["1e+06"] == pytest.approx(0.2)
    assert policy.prior_strength == 8.0  # the strongest prior among the best: the simplest policy that fits
    assert Policy.load(policy.save(tmp_path / "p.json")).prior_strength_cv == cv


def test_policy_file_round_trip_and_budget_lookup(tmp_path):
    rows = dev_rows(tmp_path)
    policy = learn_policy(rows, compute_difficulty(rows, num_probe=2), strategies=["majority", "weighted"], budgets=[2, 4], model="m", scorer="s")
    path = policy.save(tmp_path / "p" / "policy.json")
    back = Policy.load(path)
    assert back.to_dict() == policy.to_dict() and back.edges == policy.edges and back.num_probe == 2
    assert json.loads(path.read_text())["entries"][0]["ranking"]
    # Budgets between the policy's use the largest one below; below them all, the smallest.
    assert back.entry(4, 3).n == 2 and back.entry(4, 100).n == 4 and back.entry(4, 1).n == 2
    assert back.level_of(1.0) == 1 and back.level_of(0.0) == 5


@pytest.mark.parametrize(
    "text, match",
    [
        pytest.param(None, "does not exist", id="missing"),
        pytest.param("{not json", "not readable JSON", id="json"),
        pytest.param('{"version": 99}', "not a version-1 policy", id="version"),
        pytest.param('{"version": 1, "edges": [0.5, 0.2, 0.3, 0.9]}', "malformed: policy edges must be ascending", id="edges"),
    ],
)
def test_bad_policy_files_are_data_errors(tmp_path, text, match):
    path = tmp_path / "policy.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(DataError, match=match):
        Policy.load(path)


def manual_policy(entries, *, num_probe=4):
    return Policy(entries=entries, edges=[0.2, 0.4, 0.6, 0.8], num_probe=num_probe)


def every_level(n, strategy, params=None, ranking=None):
    return [PolicyEntry(level=lv, n=n, strategy=strategy, params=params or {}, ranking=ranking or []) for lv in range(1, 6)]


def test_dispatch_by_predicted_level_reuses_the_probe_and_counts_it_in_the_budget():
    # Level 1 (mean score >= 0.8) -> majority; levels 2..5 -> weighted with min reduction. B0 scores 0.15: level 5.
    entries = every_level(8, "weighted", {"reduction": "min"})
    entries[0] = PolicyEntry(level=1, n=8, strategy="majority")
    engine, sc = ScriptedEngine(handler), scorer()
    opt = OptimalStrategy(engine, sc, policy=manual_policy(entries))
    probs = [Problem(id="E0", question="E0", answer="5"), Problem(id="B0", question="B0", answer="5")]
    opt = opt.at_budget(8)
    out = opt.solve(probs)
    assert [(c["level"], c["strategy"], c["budget"]) for c in opt.choices] == [(1, "majority", 8), (5, "weighted", 8)]
    assert [c["score"] for c in opt.choices] == [pytest.approx(1.0), pytest.approx((0.1 + 0.3 + 0.1 + 0.1) / 4)]
    # Every problem got exactly 8 candidates: the 4 probe samples, then 4 more from their own seed stream.
    assert [len(r.candidates) for r in out] == [8, 8]
    assert [c.answer for c in out[1].candidates] == ["3", "5", "3", "7", "3", "5", "3", "7"]
    assert [c.index for c in out[1].candidates] == list(range(8))
    assert sorted(p.n for _, p in engine.calls) == [4, 4, 4, 4]  # probe for both, then the rest for each group
    probe_seeds = {p.seed for _, p in engine.calls[:2]}
    assert probe_seeds.isdisjoint({p.seed for _, p in engine.calls[2:]})
    assert out[1].answer == "5" and out[0].answer == "9" and all(r.strategy == "optimal" for r in out)
    # Budget accounting: usage is probe + rest, exactly the 8 candidates' tokens; majority's rest is not scored.
    for r in out:
        assert r.usage.num_generated_tokens == sum(c.num_tokens for c in r.candidates)
    assert engine.usage.num_generated_tokens == sum(r.usage.num_generated_tokens for r in out)
    assert len(sc.calls) == 2 and [len(c) for c in sc.calls] == [2, 1]  # probe (both), rest of the weighted group
    per_candidate = len("B0") + len(answer_text("3"))
    assert out[1].usage.num_scored_tokens > 6 * per_candidate and out[0].usage.num_scored_tokens < out[1].usage.num_scored_tokens


@dataclass
class FakeSearchParams:
    n: int = 16
    """Accepts only powers of two, like a search with a fixed width."""
    width: int = 1
    select: str = ""
    """"" (no final-choice rule: the probe cannot join) or a step-search rule such as "best"."""
    reduction: str = "last"

    def __post_init__(self) -> None:
        if self.n & (self.n - 1):
            raise ValidationError(f"`n` must be a power of two, got {self.n}", parameter="n", value=self.n)


class FakeSearch(Strategy):
    """Records the budgets and params it is given."""

    name = "fakesearch"
    needs_scorer = True
    params_class = FakeSearchParams
    budgets: list[int] = []
    widths: list[int] = []

    def solve(self, problems):
        budget = self.params.n
        FakeSearch.budgets.append(budget)
        FakeSearch.widths.append(self.params.width)
        from testtime.strategies import Candidate

        answer, score = ("3", 0.2) if self.params.select else ("5", None)  # with a rule: a wrong answer scored 0.2
        return [
            SolveResult(problem_id=p.id, strategy=self.name, candidates=[Candidate(index=0, text="x", num_tokens=budget, answer=answer, score=score, finish_reason="eos")], selected=0, answer=answer, usage=Usage(num_generated_tokens=budget * 10))
            for p in as_problem_list(problems)
        ]


def test_dispatch_to_a_search_gives_it_what_the_probe_left(monkeypatch):
    monkeypatch.setitem(STRATEGIES, "fakesearch", FakeSearch)
    FakeSearch.budgets, FakeSearch.widths = [], []
    ranking = [{"strategy": "fakesearch", "params": {"width": 2}}, {"strategy": "majority", "params": {}}]
    policy = manual_policy(every_level(4, "fakesearch", ranking=ranking) + every_level(16, "fakesearch", ranking=ranking))
    engine = ScriptedEngine(handler)
    opt = OptimalStrategy(engine, scorer(), policy=policy)
    opt = opt.at_budget(16)
    (res,) = opt.solve([Problem(id="B0", question="B0", answer="5")])
    # 16 - 4 probe samples = 12, refused (not a power of two), so the search runs at 8.
    assert FakeSearch.budgets == [8] and opt.choices[0]["budget"] == 8
    assert FakeSearch.widths == [2]  # the policy's params, built through the strategy's params_class
    assert res.answer == "5" and res.strategy == "optimal"
    assert res.usage.num_generated_tokens == 80 + 4 * len(answer_text("3"))  # the search's own + the probe's
    # At N=4 the probe takes the whole budget: the search is infeasible, the next choice (majority) runs.
    opt = opt.at_budget(4)
    (res4,) = opt.solve([Problem(id="B0", question="B0", answer="5")])
    assert FakeSearch.budgets == [8] and opt.choices[0]["strategy"] == "majority" and len(res4.candidates) == 4


def test_the_probe_answers_join_a_searchs_final_choice(monkeypatch):
    monkeypatch.setitem(STRATEGIES, "fakesearch", FakeSearch)
    FakeSearch.budgets, FakeSearch.widths = [], []
    policy = manual_policy(every_level(16, "fakesearch", {"select": "best"}))
    opt = OptimalStrategy(ScriptedEngine(handler), scorer(), policy=policy)
    opt = opt.at_budget(16)
    (res,) = opt.solve([Problem(id="B0", question="B0", answer="5")])
    # The search found "3" (score 0.2); B's probe answers 3, 5, 3, 7 score 0.1, 0.3, 0.1, 0.1: best is the probe's 5.
    assert [c.answer for c in res.candidates] == ["3", "3", "5", "3", "7"]
    assert [c.index for c in res.candidates] == [0, 1, 2, 3, 4]
    assert res.selected == 2 and res.answer == "5" and res.strategy == "optimal"
    assert [round(c.score, 3) for c in res.candidates] == [0.2, 0.1, 0.3, 0.1, 0.1]


def test_optimal_validates_its_policy():
    with pytest.raises(ValidationError, match=r"needs a policy \(--policy FILE\)"):
        OptimalStrategy(ScriptedEngine(handler), scorer())
    with pytest.raises(ValidationError, match="ranks candidates and needs a scorer"):
        OptimalStrategy(ScriptedEngine(handler), None, policy=manual_policy(every_level(4, "majority")))
    with pytest.raises(UnknownNameError, match="unknown strategy 'beamz'"):
        OptimalStrategy(ScriptedEngine(handler), scorer(), policy=manual_policy(every_level(4, "beamz")))
    with pytest.raises(ValidationError, match="cannot be a candidate"):
        candidate_variants(["majority", "optimal"])


def test_eval_runs_optimal_with_a_policy_and_reports_its_compute(tmp_path):
    rows = dev_rows(tmp_path)
    policy = learn_policy(rows, compute_difficulty(rows, num_probe=2), strategies=["majority", "weighted"], budgets=[2, 4])
    path = policy.save(tmp_path / "policy.json")
    cfg = EvalConfig(task="scripted", strategies=["optimal"], n=[2, 4], out=str(tmp_path / "test"), policy=str(path), batch_problems=5)
    engine = ScriptedEngine(handler)
    report = run_eval(cfg, engine=engine, scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    acc = {r.n: r.accuracy for r in report.summary}
    # Same problems as dev, so the policy's in-sample choices come back: A, B, C right at N=4.
    assert acc[4] == pytest.approx(0.6)
    row = next(r for r in report.rows if r["problem_id"] == "A0")
    assert row["by_n"]["4"]["num_generated_tokens"] == 4 * len(answer_text("5"))  # 4 candidates, probe included
    choice = row["by_n"]["4"]["choice"]  # what optimal dispatched to, per budget, for the report and for audits
    assert (choice["level"], choice["strategy"], choice["budget"]) == (policy.level_of(choice["score"]), policy.entry(choice["level"], 4).strategy, 4)
    with pytest.raises(ValidationError, match="needs --policy FILE"):
        EvalConfig(task="scripted", strategies=["optimal"], out=str(tmp_path / "x"))


@pytest.mark.parametrize("value", ["-1", "lots", "nan"])
def test_optimize_cli_bad_prior_strength_is_one_line(capsys, value):
    assert main(["optimize", "--prior-strength", value]) == 2
    assert capsys.readouterr().err.strip() == f"error: --prior-strength must be 'auto' or a number >= 0, got {value!r}."


def test_optimize_cli_bad_strategy_is_one_line(capsys):
    assert main(["optimize", "--strategies", "majority,optimal"]) == 2
    assert capsys.readouterr().err.strip() == "error: `optimal` cannot be a candidate of its own policy."


def with_search_rows(rows, correct_at, *, strategy="fakesearch", wrong=()):
    """`rows` plus a stored search run: per budget, whether it answered every problem (but `wrong`) right."""
    pids = sorted({r["problem_id"] for r in rows})
    extra = [{"problem_id": pid, "strategy": strategy, "seed": 0, "by_n": {str(n): {"correct": ok and pid not in wrong, "num_compute_tokens": 10 * n} for n, ok in correct_at.items()}} for pid in pids]
    return rows + extra


def test_a_probe_free_budget_gives_every_level_the_same_variant_even_when_the_pooled_best_ties(monkeypatch, tmp_path):
    monkeypatch.setitem(STRATEGIES, "fakesearch", FakeSearch)
    monkeypatch.setitem(STRATEGIES, "fakesearch2", FakeSearch)
    rows = dev_rows(tmp_path)
    diff = compute_difficulty(rows, num_probe=2)
    # Both searches miss one problem of ten with 4 paths (0.9 pooled): the first on A0 (level 2), the second on
    # B0 (level 4). Level 2 alone would prefer the second; a probe-free budget must not split by level.
    rows = with_search_rows(rows, {2: False, 4: True}, wrong={"A0"})
    rows = with_search_rows(rows, {2: False, 4: True}, strategy="fakesearch2", wrong={"B0"})
    policy = learn_policy(rows, diff, strategies=["majority", "weighted", "fakesearch", "fakesearch2"], budgets=[4], prior_strength=8)
    assert policy.probe_free_budgets == [4] and policy.budget_cv["4"]["probe_free"] == pytest.approx(0.8)
    assert {e.strategy for e in policy.entries} == {"fakesearch"}  # the tie goes to the order given
    assert policy.entry(2, 4).accuracy == 0.5 and policy.entry(4, 4).accuracy == 1.0


def test_a_budget_goes_probe_free_when_the_whole_budget_does_at_least_as_well_on_dev(monkeypatch, tmp_path):
    monkeypatch.setitem(STRATEGIES, "fakesearch", FakeSearch)
    rows = dev_rows(tmp_path)
    diff = compute_difficulty(rows, num_probe=2)
    # The search is always wrong with 2 paths and always right with 4. After a 2-sample probe, N=4 leaves it 2:
    # by level, the sampling strategies' 6 of 10 is the best there is; without a probe, the search's 10 of 10.
    rows = with_search_rows(rows, {2: False, 4: True})
    strategies = ["majority", "weighted", "fakesearch"]
    policy = learn_policy(rows, diff, strategies=strategies, budgets=[2, 4], prior_strength=8)
    assert policy.probe_free_budgets == [4]
    assert policy.budget_cv["4"] == {"by_level": pytest.approx(0.6), "probe_free": pytest.approx(1.0)}
    # At N=2 no search fits after the probe, and without one the pooled winner of nine problems misses the tenth
    # whenever it is the level that needed the other strategy: by level wins.
    assert policy.budget_cv["2"]["by_level"] == pytest.approx(0.6) and policy.budget_cv["2"]["probe_free"] < 0.6
    assert {(e.strategy, e.run_n) for e in policy.entries if e.n == 4} == {("fakesearch", 4)}  # every level, measured at 4
    assert len({e.strategy for e in policy.entries if e.n == 2}) == 2
    assert policy.is_probe_free(4) and policy.is_probe_free(64) and not policy.is_probe_free(3)
    assert "N=4 (no probe)" in format_policy(policy) and in_sample_accuracy(policy, rows, diff)[4][0] == 1.0
    assert Policy.load(policy.save(tmp_path / "p.json")).probe_free_budgets == [4]
    # With the search as good with 2 paths as with 4, probing costs nothing here, and both ways tie at 10 of 10:
    # the tie goes to no probe. `skip_probe="never"` keeps the probe everywhere.
    tied = learn_policy(with_search_rows(dev_rows(tmp_path / "b"), {2: True, 4: True}), diff, strategies=strategies, budgets=[4], prior_strength=8)
    assert tied.budget_cv["4"] == {"by_level": 1.0, "probe_free": 1.0} and tied.probe_free_budgets == [4]
    never = learn_policy(rows, diff, strategies=strategies, budgets=[2, 4], prior_strength=8, skip_probe="never")
    assert never.probe_free_budgets == [] and {e.run_n for e in never.entries if e.strategy == "fakesearch"} <= {2}
    with pytest.raises(ValidationError, match="`skip_probe` must be one of auto, never"):
        learn_policy(rows, diff, strategies=strategies, budgets=[4], skip_probe="sometimes")


def test_probe_free_dispatch_runs_the_choice_with_the_whole_budget_and_its_own_seed(monkeypatch):
    monkeypatch.setitem(STRATEGIES, "fakesearch", FakeSearch)
    FakeSearch.budgets, FakeSearch.widths = [], []
    policy = manual_policy(every_level(16, "fakesearch", {"width": 4}) + every_level(8, "weighted", {"reduction": "min"}))
    policy.probe_free_budgets = [8, 16]
    engine = ScriptedEngine(handler)
    opt = OptimalStrategy(engine, scorer(), policy=policy, seed=3)
    opt = opt.at_budget(16)
    (res,) = opt.solve([Problem(id="B0", question="B0", answer="5")])
    assert FakeSearch.budgets == [16] and FakeSearch.widths == [4] and engine.calls == []  # no probe was sampled
    assert res.strategy == "optimal" and res.usage.num_generated_tokens == 160 and len(res.candidates) == 1
    assert opt.choices == [{"problem_id": "B0", "n": 16, "score": None, "level": None, "strategy": "fakesearch", "params": {"width": 4}, "budget": 16}]
    # N=12 uses the N=8 entries (probe-free too); a sampling strategy draws all 12 in one call with the strategy's
    # own seed, as the single-strategy run it was chosen from did.
    opt = opt.at_budget(12)
    (res12,) = opt.solve([Problem(id="B0", question="B0", answer="5")])
    alone = ScriptedEngine(handler)
    (single,) = STRATEGIES["weighted"](alone, scorer(), params=SamplingStrategyParams(n=12, reduction="min"), seed=3).solve([Problem(id="B0", question="B0", answer="5")])
    assert [(p.n, p.seed) for _, p in engine.calls] == [(p.n, p.seed) for _, p in alone.calls] and engine.calls[0][1].n == 12
    assert [c.text for c in res12.candidates] == [c.text for c in single.candidates] and len(res12.candidates) == 12
    assert res12.answer == single.answer == "5" and opt.choices[0]["budget"] == 12
    # The search refuses 12 (not a power of two) and runs at 8 without a probe to take from.
    policy.entries = every_level(8, "fakesearch")
    opt = opt.at_budget(12)
    (res12,) = opt.solve([Problem(id="B0", question="B0", answer="5")])
    assert FakeSearch.budgets == [16, 8] and opt.choices[0]["budget"] == 8
    with pytest.raises(ValidationError, match=r"`probe_free_budgets` names budgets with no entries: \[4\]"):
        Policy(entries=every_level(8, "majority"), edges=[0.2, 0.4, 0.6, 0.8], probe_free_budgets=[4])


@dataclass
class BestSearchParams(FakeSearchParams):
    select: str = "best"


class FakeBestSearch(FakeSearch):
    """FakeSearch with a final-choice rule: answers `answer` scored 0.2, so the probe's answers can win."""

    name = "fakebest"
    params_class = BestSearchParams
    answer = "3"

    def solve(self, problems):
        return [replace(r, answer=self.answer, candidates=[replace(c, answer=self.answer) for c in r.candidates]) for r in super().solve(problems)]


def search_dev_rows(tmp_path, name, n, strategies=("majority", "weighted", "fakebest")):
    cfg = EvalConfig(task="scripted", strategies=list(strategies), n=n, out=str(tmp_path / name), batch_problems=5)
    return run_eval(cfg, engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None).rows


def test_a_searchs_dev_number_after_a_probe_is_what_optimal_gets_online(monkeypatch, tmp_path):
    monkeypatch.setitem(STRATEGIES, "fakebest", FakeBestSearch)
    FakeSearch.budgets, FakeSearch.widths = [], []
    rows = search_dev_rows(tmp_path, "dev", [2, 4])
    search = {r["problem_id"]: r for r in rows if r["strategy"] == "fakebest"}
    # Every budget keeps its candidates: the largest in the row, the others under by_n.
    assert [len(search["B0"]["by_n"]["2"]["candidates"]), len(search["B0"]["candidates"])] == [1, 1] and "candidates" not in search["B0"]["by_n"]["4"]
    # Online at N=4 with a 2-sample probe: the search runs with 2, and the probe's finished answers join its "3"
    # (0.2) for the best-score choice. A's probe has a 9 (1.0, wrong), B's a 5 (0.3), C's two 5s, D only 3s (0.1),
    # E 9s: right on B and C only, though the search alone is never right.
    opt = OptimalStrategy(ScriptedEngine(handler), scorer(), policy=manual_policy(every_level(4, "fakebest"), num_probe=2))
    online = {r.problem_id or p.id for p, r in zip(PROBLEMS, opt.at_budget(4).solve(PROBLEMS)) if r.answer == "5"}
    assert online == {"B0", "B1", "C0", "C1"} and FakeSearch.budgets[-1] == 2
    measured = measure_variants(rows, [("fakebest", {})], [4], num_probe=2)[("fakebest", "{}")][4]
    assert {pid for (pid, _s), o in measured.items() if o.correct} == online
    # Its compute is the search's at 2 plus the probe's: the two samples' tokens and their share of the scoring.
    weighted = next(r for r in rows if r["strategy"] == "weighted" and r["problem_id"] == "B0")
    chars = [len(c["text"]) for c in weighted["candidates"]]
    probe = sum(c["num_tokens"] for c in weighted["candidates"][:2]) + Usage.from_dict(weighted["usage"]).scored_tokens_of_first(chars, 2)
    assert measured[("B0", 0)].compute_tokens == pytest.approx(20 + probe) and measured[("B0", 0)].run_n == 2
    # Without a probe the search stands alone (never right); a run that kept no candidates at that budget (written
    # before searches kept them) is measured as stored.
    alone = measure_variants(rows, [("fakebest", {})], [2], num_probe=0)[("fakebest", "{}")][2]
    assert not any(o.correct for o in alone.values()) and alone[("B0", 0)].compute_tokens == 20
    old = [{**r, "by_n": {n: {k: v for k, v in at.items() if k != "candidates"} for n, at in r["by_n"].items()}} for r in rows]
    assert not any(o.correct for o in measure_variants(old, [("fakebest", {})], [4], num_probe=2)[("fakebest", "{}")][4].values())


def test_a_search_run_at_other_budgets_joins_the_dev_run(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(STRATEGIES, "fakebest", FakeBestSearch)
    main_rows = search_dev_rows(tmp_path, "dev", [4])  # the search at 4 only
    extra = search_dev_rows(tmp_path, "s2", [2], strategies=("fakebest",))  # and at 2, in another run
    merged = merge_rows(main_rows + extra)
    assert len(merged) == len(main_rows) and [r["problem_id"] for r in merged] == [r["problem_id"] for r in main_rows]
    b0 = next(r for r in merged if r["strategy"] == "fakebest" and r["problem_id"] == "B0")
    assert sorted(b0["by_n"], key=int) == ["2", "4"] and all(len(at["candidates"]) == 1 for at in b0["by_n"].values())
    one_run = search_dev_rows(tmp_path, "both", [2, 4])
    key = ("fakebest", "{}")
    assert measure_variants(merged, [key[:1] + ({},)], [4], num_probe=2)[key] == measure_variants(one_run, [key[:1] + ({},)], [4], num_probe=2)[key]
    # Read back through `--extra-runs`' loader: the same experiment at other budgets is accepted as it is.
    like = EvalConfig(task="scripted", strategies=["majority"], n=[16], out=str(tmp_path / "elsewhere"))
    assert extra_run_rows([str(tmp_path / "s2")], like, strategies=["fakebest", "weighted"]) == extra
    assert extra_run_rows([str(tmp_path / "dev")], like, strategies=["weighted"]) == [r for r in main_rows if r["strategy"] == "weighted"]
    # The CLI refuses a run of other settings, or no run at all, before the model loads, and writes nothing.
    out = tmp_path / "cli"
    base = ["optimize", "--task", "arith", "--limit", "2", "--out", str(out), "--no-progress"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "run.json").write_text(json.dumps({"identity": {"task": "arith", "split": "dev", "levels": None}}))
    assert main([*base, "--extra-runs", str(tmp_path / "other")]) == 1
    assert capsys.readouterr().err.strip() == f"error: --extra-runs: {tmp_path / 'other'} ran other settings than the dev run (split: 'dev' there, 'test' here); only runs of the same task, split, model, scorer and sampling can join."
    assert main([*base, "--extra-runs", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.strip() == f"error: --extra-runs: {tmp_path / 'nowhere'} is not an eval run directory (no run.json)."
    assert not out.exists()


def test_whether_the_probe_joins_a_search_is_learned_on_dev_and_obeyed_online(monkeypatch, tmp_path):
    monkeypatch.setitem(STRATEGIES, "fakebest", FakeBestSearch)
    monkeypatch.setattr(FakeBestSearch, "answer", "3")
    strategies = ["majority", "weighted", "fakebest"]
    rows = search_dev_rows(tmp_path, "wrong", [2, 4])
    diff = compute_difficulty(rows, num_probe=2)
    # The search alone is never right; with the probe's answers it is right on B and C: they join.
    helped = learn_policy(rows, diff, strategies=strategies, budgets=[4], prior_strength=8, skip_probe="never")
    assert helped.probe_joins and helped.probe_join_accuracy == {"joined": pytest.approx(0.4), "apart": 0.0}
    # A search that is always right ("5", 0.2) loses A and E to the probe's 9 (1.0) if they join: kept apart.
    monkeypatch.setattr(FakeBestSearch, "answer", "5")
    rows = search_dev_rows(tmp_path, "right", [2, 4])
    hurt = learn_policy(rows, diff, strategies=strategies, budgets=[4], prior_strength=8, skip_probe="never")
    assert not hurt.probe_joins and hurt.probe_join_accuracy == {"joined": pytest.approx(0.6), "apart": 1.0}
    assert {(e.strategy, e.accuracy) for e in hurt.entries} == {("fakebest", 1.0)}  # measured as it will run
    assert Policy.load(hurt.save(tmp_path / "p.json")).probe_joins is False
    from testtime.eval.report import _policy_table

    assert "the probe's answers stay out of a search's final choice (dev 0.600 joined, 1.000 apart)" in _policy_table(hurt).caption
    # Online, kept apart: the search's own answer stands and the probe is still paid for.
    opt = OptimalStrategy(ScriptedEngine(handler), scorer(), policy=hurt)
    opt = opt.at_budget(4)
    out = opt.solve(PROBLEMS)
    assert all(r.answer == "5" and len(r.candidates) == 1 for r in out)
    assert all(r.usage.num_generated_tokens > 20 and r.usage.num_scored_tokens > 0 for r in out)  # search 20 + probe
    # No search measured after a probe: nothing to decide, they stay apart.
    none = learn_policy(search_dev_rows(tmp_path, "plain", [2, 4], strategies=("majority", "weighted")), diff, strategies=["majority", "weighted"], budgets=[4])
    assert not none.probe_joins and none.probe_join_accuracy == {}
