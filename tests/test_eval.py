"""The eval harness on scripted engines: per-n results from one generation, crash-safe resume, metrics, CLI errors."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from testtime import DataError, ValidationError
from testtime.cli import main
from testtime.engines import ScriptedEngine
from testtime.eval import EvalConfig, ResultsFile, format_table, run_eval, summarize, wilson_interval
from testtime.eval._loop import Piece, run_pieces
from testtime.eval._metrics import pass_at_k, pass_at_n, samples_independently
from testtime.eval._row import EvalRow, Outcome
from testtime.scorers import ScriptedScorer
from testtime.strategies import STRATEGIES
from testtime.tasks import Problem

# Problem k's candidate i answers ANSWERS[k][i]; gold is "5" everywhere.
ANSWERS = [
    ["5", "3", "5", "5"],  # majority right at every n; greedy-like first sample right
    ["3", "5", "3", "5"],  # n=2 tie -> "3" (first class) wrong; n=4 tie -> "3" wrong
    ["3", "3", "5", "5"],
    ["7", "5", "5", "9"],  # majority right from n=4... n=2: tie 7 vs 5 -> 7 wrong
    ["5", "5", "5", "5"],
]
PROBLEMS = [Problem(id=f"p{k}", question=f"q{k}", answer="5") for k in range(len(ANSWERS))]


def handler(request, params, index):
    k = int(request.messages[-1]["content"][1:])
    return f"Step 1: think.\n\nTherefore, the final answer is: $\\boxed{{{ANSWERS[k][index]}}}$."


def scorer():
    # Scores favour the right answer only weakly, and "9" strongly.
    return ScriptedScorer(lambda q, steps: [0.9 if "{9}" in steps[-1] else 0.6 if "{5}" in steps[-1] else 0.4])


def config(tmp_path, **kw):
    base = dict(task="scripted", strategies=["majority", "bon", "weighted"], n=[1, 2, 4], out=str(tmp_path / "run"), batch_problems=2)
    base.update(kw)
    return EvalConfig(**base)


def test_per_n_results_come_from_the_first_n_candidates(tmp_path):
    report = run_eval(config(tmp_path), engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    acc = {(r.strategy, r.n): r.accuracy for r in report.summary}
    # majority@1 = first candidate: right for p0, p4 -> 2/5
    assert acc[("majority", 1)] == pytest.approx(2 / 5)
    # majority@2: p0 tie(5,3)->5 ok; p1 tie->3 no; p2 3 no; p3 tie(7,5)->7 no; p4 ok -> 2/5
    assert acc[("majority", 2)] == pytest.approx(2 / 5)
    # majority@4: p0 5; p1 tie 3/5 -> 3 no; p2 tie 3/5 -> 3 no; p3 5 (2 votes) ok; p4 ok -> 3/5
    assert acc[("majority", 4)] == pytest.approx(3 / 5)
    # bon@4 prefers "9" (0.9) in p3, else any "5" (0.6): p0,p1,p2,p4 right, p3 wrong -> 4/5
    assert acc[("bon", 4)] == pytest.approx(4 / 5)
    # weighted@4 on p3: 5 -> 1.2 vs 9 -> 0.9 vs 7 -> 0.4: right; p1: 3 -> 0.8, 5 -> 1.2: right -> 5/5
    assert acc[("weighted", 4)] == pytest.approx(1.0)
    passes = {r.n: r.pass_at_n for r in report.summary if r.strategy == "majority"}
    # pass@n is the unbiased estimate from all 4 samples (3, 2, 2, 2 and 4 correct): pass@1 = mean c/4 = 3.25/5,
    # pass@2 = mean 1 - C(4-c, 2)/C(4, 2) = (1 + 3 * 5/6 + 1)/5; not "a correct one among the first n" (0.4, 0.8).
    assert passes == {1: pytest.approx(0.65), 2: pytest.approx(0.9), 4: pytest.approx(1.0)}
    assert all(r.pass_at_n == passes[r.n] for r in report.summary)  # the three share their samples
    # The rows keep the flag they have always stored: a correct one among the first n.
    assert [r["by_n"]["2"]["pass"] for r in report.rows if r["strategy"] == "majority"] == [True, True, False, True, True]
    assert len(report.rows) == 15  # 5 problems x 3 strategies x 1 seed
    row = next(r for r in report.rows if r["problem_id"] == "p3" and r["strategy"] == "weighted")
    assert [c["answer"] for c in row["candidates"]] == ANSWERS[3]
    assert row["by_n"]["2"]["num_generated_tokens"] == sum(c["num_tokens"] for c in row["candidates"][:2])
    assert row["by_n"]["4"]["num_compute_tokens"] > row["by_n"]["4"]["num_generated_tokens"]  # scored tokens count
    assert all(p.exists() and p.stat().st_size > 10_000 for p in report.paths)
    assert (tmp_path / "run" / "summary.md").read_text().count("\n") > 10


class Crash(Exception):
    pass


def test_resume_after_crash_gives_the_same_summary(tmp_path):
    calls = {"n": 0}

    def crashing(request, params, index):
        calls["n"] += 1
        if calls["n"] > 8:  # dies in the second chunk (chunks of 2 problems x 4 candidates)
            raise Crash
        return handler(request, params, index)

    cfg = config(tmp_path)
    with pytest.raises(Crash):
        run_eval(cfg, engine=ScriptedEngine(crashing), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    partial = ResultsFile(tmp_path / "run" / "results.jsonl").load()
    assert {r["problem_id"] for r in partial} == {"p0", "p1"} and len(partial) == 6
    resumed = run_eval(cfg, engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    fresh = run_eval(config(tmp_path, out=str(tmp_path / "fresh")), engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    assert resumed.table == fresh.table
    keys = [(r["problem_id"], r["strategy"], r["seed"]) for r in ResultsFile(tmp_path / "run" / "results.jsonl").load()]
    assert len(keys) == len(set(keys)) == 15
    # A finished run resumes to the same summary without generating anything.
    idle = ScriptedEngine(crashing)
    again = run_eval(cfg, engine=idle, scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    assert again.table == fresh.table and idle.usage.num_calls == 0


def test_rerun_of_a_partly_written_chunk_writes_only_missing_rows(tmp_path):
    cfg = config(tmp_path)
    run_eval(cfg, engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    path = tmp_path / "run" / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:7]) + lines[7][:25])  # a torn write in the middle of row 8 (chunk 2)
    again = run_eval(cfg, engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    rows = ResultsFile(path).load()
    assert len(rows) == 15 and len({(r["problem_id"], r["strategy"]) for r in rows}) == 15
    assert [json.loads(x) for x in lines[:7]] == rows[:7]  # nothing already written was changed
    assert len(again.rows) == 15


def test_results_file_torn_last_line_is_dropped_and_middle_corruption_is_an_error(tmp_path):
    path = tmp_path / "r.jsonl"
    f = ResultsFile(path)
    f.append([{"a": 1}, {"a": 2}])
    with open(path, "ab") as fh:
        fh.write(b'{"a": 3, "b"')
    assert f.load() == [{"a": 1}, {"a": 2}]
    f.append([{"a": 4}])
    assert f.load() == [{"a": 1}, {"a": 2}, {"a": 4}]
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(DataError, match=r"line 2 is not a JSON object"):
        f.load()
    assert path.read_text() == '{"a": 1}\nnot json\n{"a": 2}\n'  # left untouched


def test_resume_with_different_settings_is_refused(tmp_path):
    run_eval(config(tmp_path), engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    with pytest.raises(ValidationError, match=r"holds a run with different settings \(n: \[1, 2, 4\] there, \[1, 2, 8\] now\)"):
        run_eval(config(tmp_path, n=[1, 2, 8]), engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)


def test_a_larger_limit_extends_the_run_and_generates_only_the_new_problems(tmp_path):
    run_eval(config(tmp_path, limit=2), engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS[:2], progress=False, log=lambda *_: None)
    before = (tmp_path / "run" / "results.jsonl").read_text()
    engine = ScriptedEngine(handler)
    report = run_eval(config(tmp_path, limit=None), engine=engine, scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    assert sorted({r["problem_id"] for r in report.rows}) == sorted(p.id for p in PROBLEMS)
    assert (tmp_path / "run" / "results.jsonl").read_text().startswith(before)  # old rows kept, byte for byte
    assert engine.usage.num_calls == 2  # chunks [p2, p3] and [p4]; the done chunk [p0, p1] is not generated again
    assert json.loads((tmp_path / "run" / "run.json").read_text())["identity"]["limit"] is None


def test_a_shared_scorer_prompt_is_charged_in_full_at_every_budget(tmp_path):
    """Budget n is priced from the run at max N: the prompt a scorer reads once per problem costs the same at
    n = 1 as at n = 4; only the per-candidate part shrinks with n."""
    shared = ScriptedScorer(scorer().fn, shared_prompt=True)
    report = run_eval(config(tmp_path, strategies=["weighted"]), engine=ScriptedEngine(handler), scorer=shared, problems=PROBLEMS, progress=False, log=lambda *_: None)
    row = report.rows[0]
    q, chars = len(PROBLEMS[0].question), [len(c["text"]) for c in row["candidates"]]
    assert row["usage"]["num_scored_prefix_tokens"] == q and row["usage"]["num_scored_tokens"] == q + sum(chars)
    for n in (1, 2, 4):
        at = row["by_n"][str(n)]
        assert at["num_compute_tokens"] - at["num_generated_tokens"] == q + sum(chars[:n])


def test_wilson_interval():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


@pytest.mark.parametrize(
    "argv, code, message",
    [
        pytest.param(["eval", "--task", "nope"], 2, "error: unknown task 'nope'; choose one of: alpaca_farm, arith, gsm8k, instructions, jsonl, math500", id="task"),
        pytest.param(["eval", "--strategy", "majority,magic"], 2, f"error: unknown strategy 'magic'; choose one of: {', '.join(sorted(STRATEGIES))}", id="strategy"),
        pytest.param(["eval", "--n", "1,0"], 2, "error: budgets --n must be integers >= 1, got 0.", id="n-zero"),
        pytest.param(["eval", "--temperature", "-1"], 2, "error: `temperature` must be >= 0, got -1.0.", id="temperature"),
        pytest.param(["eval", "--task", "jsonl"], 2, "error: task 'jsonl' needs `data`, the path of a JSONL file (`--data PATH`).", id="jsonl-no-data"),
    ],
)
def test_cli_bad_input_is_one_line(argv, code, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "x")]) == code
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_cli_malformed_jsonl_names_the_line(capsys, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": oops}\n')
    assert main(["eval", "--task", "jsonl", "--data", str(data), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "line 2" in err and err.count("\n") == 1


def test_cli_unknown_model_is_one_line(capsys, tmp_path):
    assert main(["solve", "1+1", "--model", str(tmp_path / "no-such-model"), "--strategy", "majority"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: could not load model") and err.count("\n") == 1


# -- pass@n -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, c, k", [(4, 1, 2), (5, 2, 3), (6, 3, 1), (8, 3, 4), (7, 0, 3), (5, 5, 2), (6, 2, 5), (3, 1, 3)])
def test_pass_at_k_is_the_share_of_k_subsets_holding_a_correct_sample(n, c, k):
    subsets = list(itertools.combinations([True] * c + [False] * (n - c), k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets), abs=1e-12)


def test_pass_at_n_uses_every_sample_of_a_sampling_row_and_the_stored_flag_otherwise():
    # 8 samples, the 3 correct ones last: at n=2 "a correct one among the first n" says 0, sampling with
    # replacement says 1 - (5/8)^2 = 0.609; drawing 2 of the 8 without replacement gives 1 - C(5,2)/C(8,2) = 18/28.
    cands = [{"correct": k >= 5} for k in range(8)]
    row = EvalRow(problem_id="p", strategy="majority", by_n={2: Outcome(passed=False), 8: Outcome(passed=True)}, candidates=cands)
    assert pass_at_n(row, 2, sampled=True) == pytest.approx(18 / 28)
    assert pass_at_n(row, 8, sampled=True) == 1.0
    assert pass_at_n(row, 2, sampled=False) == 0.0  # a search: whether a candidate it returned is correct
    assert pass_at_n(EvalRow(by_n={2: Outcome(passed=None)}, candidates=[{"correct": None}] * 2), 2, sampled=True) is None  # no gold


def test_summary_pass_at_n_by_kind_of_strategy():
    """The summary's pass@n: the estimate for the sampling strategies, the stored flag for the others; the same
    whether the rows come as EvalRows or as the stored dicts."""
    def row(strategy, flags, stored):
        return EvalRow(problem_id=strategy, strategy=strategy, gold="5", by_n={1: Outcome(passed=stored)}, candidates=[{"correct": f} for f in flags])

    rows = [row("majority", [False, True, True, False], False), row("beam", [False, True], False), row("greedy", [True], True)]
    summary = {r.strategy: r.pass_at_n for r in summarize(rows, ["majority", "beam", "greedy"])}
    assert summary == {"majority": 0.5, "beam": 0.0, "greedy": 1.0}
    assert summarize([r.to_dict() for r in rows], ["majority", "beam", "greedy"]) == summarize(rows, ["majority", "beam", "greedy"])
    assert samples_independently("deepconf:keep=0.9") and not samples_independently("deepconf-online") and not samples_independently("majority (run-a)")
    assert "1-C(N-c,n)/C(N,n)" in format_table(summarize(rows, ["majority"]))  # the table says what pass@n is


# -- the typed row and the run loop ----------------------------------------------------------------------


def continuing_handler(request, params, index):
    """Answers that a live batch can continue from text (searches need it): one per seed, two steps."""
    if request.partial:
        return FULL[request.partial[:3]][len(request.partial) :]
    key = f"{random.Random(params.seed).randrange(100):03d}"
    return FULL.setdefault(key, key + " step one.\n\nTherefore, the final answer is: $\\boxed{" + ("5" if int(key) % 3 else "4") + "}$.")


FULL: dict[str, str] = {}


def test_stored_rows_read_and_write_back_byte_for_byte(tmp_path):
    """`EvalRow` writes exactly the JSON the eval has always stored: every line of a run with sampling strategies,
    searches (per-budget candidates) and a strategy with `details` survives a round trip unchanged."""
    cfg = config(tmp_path, strategies=["majority", "weighted", "beam", "adaptive"], n=[4, 8])
    run_eval(cfg, engine=ScriptedEngine(continuing_handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 20
    for line in lines:
        assert json.dumps(EvalRow.from_dict(json.loads(line)).to_dict(), ensure_ascii=False) == line
    beam = EvalRow.from_dict(json.loads(next(x for x in lines if '"beam"' in x)))
    assert list(beam.by_n) == [4, 8] and beam.by_n[4].candidates and beam.by_n[8].candidates is None
    assert EvalRow.from_dict(json.loads(next(x for x in lines if '"adaptive"' in x))).by_n[8].details["samples"] >= 4


def test_run_pieces_appends_missing_rows_in_order_and_stops_between_pieces(tmp_path):
    results = ResultsFile(tmp_path / "r.jsonl")
    asked = []

    def make(missing):
        asked.append(list(missing))
        return [{"k": k} for k in reversed(["a", "b", "c", "d"])]  # more rows than missing, out of order

    pieces = [Piece(["a", "b"], make), Piece(["c", "d"], make)]
    done = {"b"}
    assert run_pieces(pieces, results, done=done, key=lambda r: r["k"])
    assert asked == [["a"], ["c", "d"]] and [r["k"] for r in results.load()] == ["a", "c", "d"] and done == set("abcd")
    assert run_pieces(pieces, results, done=done, key=lambda r: r["k"]) and len(asked) == 2  # nothing left to do
    assert not run_pieces([Piece(["e"], make)], results, done=done, key=lambda r: r["k"], max_minutes=-1)  # time is up
    assert len(asked) == 2


def test_merge_summarizes_without_an_engine(tmp_path, monkeypatch):
    """`merge` calls only the summary half of `run_eval`: no engine, scorer or strategy is built, and the summary
    is the unsharded run's."""
    from testtime.eval import runner as runner_module
    from testtime.eval._merge import merge_runs

    quiet = dict(engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    whole = run_eval(config(tmp_path, out=str(tmp_path / "whole")), **quiet)
    for i in range(2):
        run_eval(config(tmp_path, out=str(tmp_path / f"s{i}"), shard=f"{i}/2"), **quiet)
    monkeypatch.setattr(runner_module, "make_strategy", None)  # building a strategy would fail
    merged = merge_runs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "merged", log=lambda *_: None)
    assert len(merged.rows) == 15 and merged.table == whole.table


def test_progress_reaches_inside_a_chunk(tmp_path, capsys):
    """With progress on, the engine gets a bar factory for every generation (sequences done within a chunk, the bar
    gone when it ends); off, it gets none."""
    seen = []

    class Recording(ScriptedEngine):
        def generate(self, requests, params=None, *, use_tqdm=False):
            seen.append(use_tqdm)
            return super().generate(requests, params, use_tqdm=use_tqdm)

    run_eval(config(tmp_path, strategies=["greedy", "majority"]), engine=Recording(handler), scorer=scorer(), problems=PROBLEMS, progress=True, log=lambda *_: None)
    assert len(seen) == 6 and all(callable(u) and u.keywords == {"leave": False} for u in seen)  # 3 chunks x (sampling, greedy)
    assert "eval scripted: 100%" in capsys.readouterr().err.replace("\r", "\n")
    seen.clear()
    run_eval(config(tmp_path, out=str(tmp_path / "quiet"), strategies=["majority"]), engine=Recording(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    assert seen == [False] * 3
