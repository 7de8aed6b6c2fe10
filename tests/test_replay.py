"""`testtime replay`: rules replayed on stored traces agree with the strategies run live, and calibration."""

from __future__ import annotations

import json

import pytest
from test_deepconf import ONLINE, trace_engine

from testtime import DataError
from testtime.cli import main
from testtime.eval import EvalConfig, run_eval
from testtime.eval.replay import calibration, load_stored, replay_rules, simulate_adaptive, simulate_online
from testtime.scorers import ConfidenceTrace
from testtime.strategies import AdaptiveConsistency, AdaptiveParams, Candidate, DeepConfOnline, DeepConfOnlineParams, DeepConfParams
from testtime.tasks import Problem

TRACES = {
    "a": ONLINE["q"],
    "b": [("9", [3.0] * 16)] * 8,
    "c": [("1", [2.0] * 24), ("2", [5.0] * 18), ("1", [1.0] * 30), ("2", [4.0] * 20), ("1", [4.5] * 40), ("2", [1.5] * 50), ("1", [5.0] * 36), ("3", [0.5] * 20)],
}
PROBLEMS = [Problem(id=f"id-{q}", question=q, answer=gold) for q, gold in (("a", "5"), ("b", "9"), ("c", "1"))]
SAMPLING_KW = dict(temperature=1.0, max_tokens=200)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    run_eval(EvalConfig(task="fake", strategies=["majority", "deepconf"], n=[8], out=str(out), **SAMPLING_KW), engine=trace_engine(TRACES), problems=PROBLEMS, progress=False, log=lambda s: None)
    return out


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(DeepConfOnlineParams(warmup=4, keep=0.5, consensus=0.6, window=4, check_every=16), id="consensus-0.6"),
        pytest.param(DeepConfOnlineParams(warmup=4, keep=0.5, consensus=0.95, window=4, check_every=8), id="keep-0.5-check-8"),
        pytest.param(DeepConfOnlineParams(warmup=3, keep=0.1, consensus=1.0, window=4, check_every=16), id="low-no-consensus"),
        pytest.param(DeepConfOnlineParams(warmup=2, keep=0.9, metric="mean", window=2, check_every=5), id="high-mean"),
    ],
)
def test_online_replay_equals_the_live_strategy(stored, params, monkeypatch):
    from testtime import SamplingParams
    from testtime.engines import TextLiveBatch

    # The replay models the in-process engine, which drops a row at the token its window falls below the
    # threshold; the scripted engine's text batch does too when it checks every token.
    monkeypatch.setattr(TextLiveBatch, "confidence_chunk", 1)
    problems = {p.problem_id: p for p in load_stored(stored)}
    for prob in PROBLEMS:
        live = DeepConfOnline(trace_engine(TRACES), params=params, sampling=SamplingParams(**SAMPLING_KW)).at_budget(8).solve(prob)[0]
        answer, tokens, details = simulate_online(problems[prob.id], 8, params)
        assert answer == live.answer
        assert tokens == live.usage.num_generated_tokens
        assert details["threshold"] == pytest.approx(live.details["threshold"])
        assert (details["stopped_low_confidence"], details["stopped_by_consensus"]) == (live.details["stopped_low_confidence"], live.details["stopped_by_consensus"])


@pytest.mark.parametrize("wave", [1, 2, 3])
def test_adaptive_replay_equals_the_live_strategy(stored, wave):
    from testtime import SamplingParams

    problems = {p.problem_id: p for p in load_stored(stored)}
    params = AdaptiveParams(wave=wave, threshold=0.8)
    for prob in PROBLEMS:
        live = AdaptiveConsistency(trace_engine(TRACES), params=params, sampling=SamplingParams(**SAMPLING_KW)).at_budget(8).solve(prob)[0]
        answer, tokens, used = simulate_adaptive(problems[prob.id], 8, params)
        assert (answer, tokens, used) == (live.answer, live.usage.num_generated_tokens, len(live.candidates))


def test_replay_rules_compare_with_majority_on_the_same_problems(stored):
    problems = load_stored(stored)
    rows = replay_rules(problems, [8], {"majority": None, "deepconf:keep=0.5": DeepConfParams(keep=0.5, metric="mean"), "deepconf-online": DeepConfOnlineParams(warmup=4, keep=0.5, consensus=0.6, window=4)})
    maj, off, on = rows
    assert maj.tokens_vs_majority == 1.0 and maj.only_rule == maj.only_majority == 0 and maj.mcnemar_p == 1.0
    assert off.mean_generated_tokens == maj.mean_generated_tokens  # offline DeepConf samples the same n
    assert on.mean_generated_tokens < maj.mean_generated_tokens
    # The deepconf rows stored by the eval are what the offline rule gives.
    stored_rows = [json.loads(line) for line in (stored / "results.jsonl").read_text().splitlines()]
    right = sum(r["by_n"]["8"]["correct"] for r in stored_rows if r["strategy"] == "deepconf")
    assert replay_rules(problems, [8], {"deepconf": DeepConfParams()})[0].accuracy == right / 3


def test_calibration_auc_by_hand():
    # One problem: two right samples with confidence 3 and 1, two wrong with 2 and 0 -> AUC = 3 of 4 pairs.
    def c(answer):
        return Candidate(answer=answer)

    def t(conf):
        return ConfidenceTrace(logprob=[-1.0 / conf] * 4, confidence=[conf] * 4, certainty=[])

    from testtime.eval.replay import StoredProblem

    p = StoredProblem("p", "5", [c("5"), c("5"), c("7"), c("8"), c(None)], [True, True, False, False, False], [t(3.0), t(1.0), t(2.0), t(0.5), t(9.0)])
    rows = {(r["metric"], r.get("window")): r for r in calibration([p], windows=(4,))}
    assert rows[("mean", None)]["auc_within"] == 0.75 and rows[("mean", None)]["num_samples"] == 4  # unanswered left out
    assert rows[("logprob", None)]["auc_pooled"] == 0.75  # -1/conf orders the samples like conf


def test_cli_replay_and_its_errors(stored, tmp_path, capsys):
    assert main(["replay", str(stored), "--n", "4,8", "--rules", "majority,deepconf-online:keep=0.5:window=4", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "deepconf-online:keep=0.5:window=4" in out and "AUC within" in out
    data = json.loads((tmp_path / "replay.json").read_text())
    assert [(r["rule"], r["n"]) for r in data["rules"]] == [("majority", 4), ("deepconf-online:keep=0.5:window=4", 4), ("majority", 8), ("deepconf-online:keep=0.5:window=4", 8)]
    for argv, match in [
        (["replay", str(tmp_path / "nope")], "holds no results.jsonl"),
        (["replay", str(stored), "--n", "9"], r"--n must be budgets in \[1, 8\]"),
        (["replay", str(stored), "--rules", "beam"], "replay runs majority, deepconf"),
        (["replay", str(stored), "--rules", "deepconf:kep=1"], "no parameter 'kep'"),
    ]:
        assert main(argv) in (1, 2)
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and match.replace("\\", "") in err.replace("\\", "") or __import__("re").search(match, err), err


def test_a_run_without_traces_says_how_to_get_them(tmp_path):
    from testtime.engines import ScriptedEngine

    run_eval(EvalConfig(task="fake", strategies=["majority"], n=[2], out=str(tmp_path / "r"), **SAMPLING_KW), engine=ScriptedEngine(lambda *a: "\\boxed{5}"), problems=PROBLEMS[:1], progress=False, log=lambda s: None)
    with pytest.raises(DataError, match="without a stored trace"):
        load_stored(tmp_path / "r")


def test_mcnemar_exact_two_sided_by_hand():
    from testtime.eval._metrics import mcnemar_p

    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 0) == mcnemar_p(0, 5) == 2 / 32  # both tails of Binomial(5, 1/2)
    assert mcnemar_p(3, 1) == 2 * (1 + 4) / 16
    assert mcnemar_p(2, 2) == 1.0


def test_live_rows_compared_with_majority_on_the_same_problems(stored):
    from testtime.eval.replay import compare_stored

    rows = {r.rule: r for r in compare_stored(stored)}
    stored_rows = [json.loads(line) for line in (stored / "results.jsonl").read_text().splitlines()]
    dc = [r["by_n"]["8"]["correct"] for r in stored_rows if r["strategy"] == "deepconf"]
    mj = [r["by_n"]["8"]["correct"] for r in stored_rows if r["strategy"] == "majority"]
    assert rows["majority"].accuracy == sum(mj) / 3 and rows["deepconf"].accuracy == sum(dc) / 3
    assert (rows["deepconf"].only_rule, rows["deepconf"].only_majority) == (sum(a and not b for a, b in zip(dc, mj)), sum(b and not a for a, b in zip(dc, mj)))
    assert rows["deepconf"].tokens_vs_majority == 1.0
