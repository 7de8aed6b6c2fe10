"""Sharded evals (`--shard I/K`) merged with `testtime merge` equal the unsharded run, row for row; a missing,
duplicated or unfinished shard is a one-line error."""

from __future__ import annotations

import json
import shutil

import pytest
from _rows import without_measurements

from testtime import DataError, ValidationError
from testtime.cli import main
from testtime.engines import ScriptedEngine
from testtime.eval import EvalConfig, ResultsFile, run_eval
from testtime.eval._merge import merge_runs
from testtime.eval._shard import parse_shard
from testtime.scorers import ScriptedScorer
from testtime.tasks import Problem

# Problem k's candidate i answers str((k + i * (k % 3)) % 4 + 4); gold is "5": a mix of right and wrong.
PROBLEMS = [Problem(id=f"p{k}", question=f"q{k}", answer="5", level=1 + k % 3) for k in range(11)]


def handler(request, params, index):
    k = int(request.messages[-1]["content"][1:])
    answer = (k + index * (k % 3)) % 4 + 4
    return "Step 1: think.\n\n" * (1 + k % 2) + f"Therefore, the final answer is: $\\boxed{{{answer}}}$."


def scorer():
    return ScriptedScorer(lambda q, steps: [0.8 if "{5}" in steps[-1] else 0.3 + 0.1 * len(steps)])


def config(out, **kw):
    base = dict(task="scripted", strategies=["majority", "bon", "weighted", "greedy"], n=[1, 2, 4], seeds=[0, 1], out=str(out), batch_problems=2)
    return EvalConfig(**{**base, **kw})


def run(cfg):
    return run_eval(cfg, engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shards")
    full = run(config(tmp / "full"))
    for i in range(3):  # 11 problems in chunks of 2 -> 6 chunks -> shards of 2 chunks each
        run(config(tmp / f"s{i}", shard=f"{i}/3"))
    return tmp, full


def test_merged_shards_equal_the_unsharded_run(runs, capsys):
    tmp, full = runs
    shard_ids = [json.loads((tmp / f"s{i}" / "shard.json").read_text())["problem_ids"] for i in range(3)]
    assert shard_ids == [["p0", "p1", "p2", "p3"], ["p4", "p5", "p6", "p7"], ["p8", "p9", "p10"]]
    assert main(["merge", str(tmp / "s2"), str(tmp / "s0"), str(tmp / "s1"), "--out", str(tmp / "merged")]) == 0
    merged = ResultsFile(tmp / "merged" / "results.jsonl").load()
    unsharded = ResultsFile(tmp / "full" / "results.jsonl").load()
    assert len(merged) == 11 * 4 * 2
    # Same rows in the same order: every candidate, answer, score and token count; only wall times differ.
    assert [without_measurements(r) for r in merged] == [without_measurements(r) for r in unsharded]
    report = json.loads((tmp / "merged" / "summary.json").read_text())
    expected = json.loads((tmp / "full" / "summary.json").read_text())
    for row in report + expected:
        row.pop("mean_wall_time")
    assert report == expected
    assert (tmp / "merged" / "summary.md").read_text().splitlines()[0] == (tmp / "full" / "summary.md").read_text().splitlines()[0]
    assert (tmp / "merged" / "accuracy_vs_n.png").stat().st_size > 10_000
    meta = json.loads((tmp / "merged" / "run.json").read_text())
    assert meta["identity"]["shard"] is None and len(meta["merged_from"]) == 3
    assert {r.strategy for r in full.summary} == {"majority", "bon", "weighted", "greedy"}
    assert "majority" in capsys.readouterr().out  # the merged table is printed, as after a run
    # Merging again rebuilds the merge directory instead of appending to it.
    merge_runs([tmp / f"s{i}" for i in range(3)], tmp / "merged", log=lambda *_: None)
    assert len(ResultsFile(tmp / "merged" / "results.jsonl").load()) == 11 * 4 * 2


def one_line_error(argv, capsys) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err


def test_missing_duplicated_and_unfinished_shards_are_one_line_errors(runs, tmp_path, capsys):
    tmp, _ = runs
    s0, s1, s2 = (str(tmp / f"s{i}") for i in range(3))
    out = str(tmp_path / "m")
    assert one_line_error(["merge", s0, s2, "--out", out], capsys) == "error: shard 1/3 is missing (1 of 3 missing); run it with --shard 1/3 and merge again\n"
    err = one_line_error(["merge", s0, s1, s1, s2, "--out", out], capsys)
    assert err == f"error: shard 1/3 is given twice ({s1} and {s1})\n"
    # A shard that crashed before its last chunk: its rows are missing.
    broken = tmp_path / "s1"
    shutil.copytree(s1, broken)
    path = broken / "results.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-3]))
    err = one_line_error(["merge", s0, str(broken), s2, "--out", out], capsys)
    assert err.startswith(f"error: shard 1/3 ({broken}) lacks 3 results (first: problem 'p7', strategy bon, seed 1); rerun its command")
    # Shards of different experiments.
    other = tmp_path / "other"
    shutil.copytree(s2, other)
    meta = json.loads((other / "run.json").read_text())
    meta["identity"]["temperature"] = 0.5
    (other / "run.json").write_text(json.dumps(meta))
    err = one_line_error(["merge", s0, s1, str(other), "--out", out], capsys)
    assert err == f"error: the shards ran different settings (temperature: 0.8 in {s0}, 0.5 in {other})\n"
    assert one_line_error(["merge", str(tmp / "full"), "--out", out], capsys).startswith(f"error: {tmp / 'full'} is not a shard (no shard.json)")
    assert one_line_error(["merge", s0, s1, s2, "--out", str(tmp / "full")], capsys) == f"error: {tmp / 'full'} holds an eval run, not a merge; merge into another --out\n"


def test_a_shard_resumes_and_refuses_a_changed_problem_list(runs, tmp_path):
    cfg = config(tmp_path / "s1", shard="1/3")
    calls = {"n": 0}

    def crashing(request, params, index):
        calls["n"] += 1
        if calls["n"] > 4 * 2 + 2:  # dies inside the shard's second chunk
            raise RuntimeError("killed")
        return handler(request, params, index)

    with pytest.raises(RuntimeError):
        run_eval(cfg, engine=ScriptedEngine(crashing), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    run(cfg)
    tmp, _ = runs
    resumed = [without_measurements(r) for r in ResultsFile(tmp_path / "s1" / "results.jsonl").load()]
    assert sorted(resumed, key=json.dumps) == sorted((without_measurements(r) for r in ResultsFile(tmp / "s1" / "results.jsonl").load()), key=json.dumps)
    with pytest.raises(DataError, match=r"records a different slice \(num_problems differs\)"):
        run_eval(cfg, engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS[:-1], progress=False, log=lambda *_: None)


@pytest.mark.parametrize(
    "text, ok",
    [
        pytest.param("0/4", (0, 4), id="first"),
        pytest.param(" 3 / 4 ", (3, 4), id="spaces"),
        pytest.param("4/4", None, id="past-the-end"),
        pytest.param("1/0", None, id="zero"),
        pytest.param("-1/4", None, id="negative"),
        pytest.param("1of4", None, id="format"),
    ],
)
def test_parse_shard(text, ok):
    if ok is not None:
        assert parse_shard(text) == ok
    else:
        with pytest.raises(ValidationError, match=r"`shard` must be I/K with 0 <= I < K \(e.g. 0/4 .. 3/4\), got "):
            parse_shard(text)


def test_more_shards_than_chunks_is_refused(tmp_path):
    with pytest.raises(ValidationError, match=r"--shard 0/7: 11 problems make 6 chunks of 2, and a shard takes whole chunks; use K <= 6 or a smaller --batch-problems"):
        run(config(tmp_path / "x", shard="0/7"))


def test_cli_shard_flag_is_validated(capsys, tmp_path):
    assert main(["eval", "--shard", "2/2", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err == "error: `shard` must be I/K with 0 <= I < K (e.g. 0/4 .. 3/4), got '2/2'.\n"
