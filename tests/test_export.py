"""`testtime export`: selection rules on hand-written runs, the three formats as `datasets` and TRL read them,
and the bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testtime._errors import DataError
from testtime.cli import main
from testtime.eval._export_pool import PoolCandidate, ProblemPool
from testtime.eval._export_select import preference_pairs
from testtime.eval._row import EvalRow, Outcome
from testtime.eval.export import ExportRules, export_records, write_jsonl_atomic
from testtime.tasks import Problem, load_task

IDENTITY = {"task": "arith", "split": "test", "limit": 3}
P0 = "arith-test-L1-0000"  # gold 20
P1 = "arith-test-L2-0000"  # gold 6

A = "## Step 1: 13 + 7 = 20\n\nThe final answer is $\\boxed{20}$."
B = "## Step 1: 13 - 7 = 6\n\nThe final answer is $\\boxed{6}$."
C = "## Step 1: Emma gets 7 more.\n\n## Step 2: 13 + 7 = 20\n\nThe final answer is $\\boxed{20}$."
D = "## Step 1: 13 + 7 = 21\n\nThe final answer is $\\boxed{21}$."


def cand(text, answer, correct, score):
    return {"text": text, "answer": answer, "correct": correct, "num_tokens": 10, "finish_reason": "stop", "score": score, "scores": [score]}


# Pool order A, A, B, C, D; reward order A, C, D, B: every rule below picks differently under pool order and
# reward order, and the duplicate A is the top reward, so dedupe-after-top-k loses a slot.
P0_CANDIDATES = [cand(A, "20", True, 0.9), cand(A, "20", True, 0.9), cand(B, "6", False, 0.7), cand(C, "20", True, 0.8), cand(D, "21", False, 0.75)]


def write_run(path: Path, rows: list[EvalRow], identity: dict = IDENTITY) -> Path:
    path.mkdir(parents=True)
    (path / "run.json").write_text(json.dumps({"identity": identity}))
    (path / "results.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows))
    return path


def row(pid, candidates, *, strategy="weighted", seed=0, selected=(0, 3), gold="20"):
    # The choice differs between budgets: "chosen" must read the largest budget's.
    by_n = {1: Outcome(answer="x", selected=selected[0]), len(candidates): Outcome(answer="x", selected=selected[1])}
    return EvalRow(problem_id=pid, strategy=strategy, seed=seed, level=1, gold=gold, by_n=by_n, candidates=candidates)


@pytest.fixture
def run_dir(tmp_path):
    return write_run(tmp_path / "run", [row(P0, P0_CANDIDATES), row(P1, [cand(B, "6", True, 0.2)], selected=(0, 0), gold="6")])


def texts(records):
    return [r["messages"][-1]["content"] for r in records]


def sft(run_dir, **rules):
    return export_records([str(run_dir)], "sft", ExportRules(**rules), strategies=None).records


@pytest.mark.parametrize(
    "rules, want",
    [
        pytest.param({}, [A, B, C, D, B], id="dedupe-default"),
        pytest.param({"dedupe": False}, [A, A, B, C, D, B], id="no-dedupe"),
        pytest.param({"correct_only": True}, [A, C, B], id="correct-only"),
        pytest.param({"chosen_only": True}, [C, B], id="chosen-at-largest-n"),
        pytest.param({"top_k": 2}, [A, C, B], id="top-k-after-dedupe"),
        pytest.param({"top_k": 2, "dedupe": False}, [A, A, B], id="top-k-keeps-copies"),
        pytest.param({"max_per_problem": 2}, [A, B, B], id="max-per-problem-in-pool-order"),
        pytest.param({"correct_only": True, "top_k": 1}, [A, B], id="correct-then-top-k"),
    ],
)
def test_selection_rules(run_dir, rules, want):
    assert texts(sft(run_dir, **rules)) == want


def test_top_k_needs_rewards(tmp_path):
    run = write_run(tmp_path / "run", [row(P0, [cand(A, "20", True, None), cand(B, "6", False, None)], strategy="majority")])
    with pytest.raises(DataError, match=r"--top-k needs rewards, but candidate 0 of problem 'arith-test-L1-0000' \(majority"):
        sft(run, top_k=1)


def test_correct_only_needs_gold(tmp_path):
    run = write_run(tmp_path / "run", [row(P0, [cand(A, "20", None, 0.5)])])
    with pytest.raises(DataError, match="--correct-only needs gold answers"):
        sft(run, correct_only=True)


def test_strategy_filter_and_dedupe_across_runs(tmp_path):
    r1 = write_run(tmp_path / "r1", [row(P0, [cand(A, "20", True, 0.9)], strategy="bon"), row(P0, [cand(C, "20", True, 0.5)], strategy="majority")])
    r2 = write_run(tmp_path / "r2", [row(P0, [cand(A, "20", True, 0.9), cand(D, "21", False, 0.1)], strategy="bon", seed=3)])
    records = export_records([str(r1), str(r2)], "sft", strategies=["bon"]).records
    assert texts(records) == [A, D]  # r2's copy of A is dropped, the majority row is not read
    assert records[1]["provenance"] == {"run": str(r2), "problem_id": P0, "strategy": "bon", "n": 2, "seed": 3, "candidate": 1, "answer": "21", "correct": False, "reward": 0.1}


def pool(rewards, correct=None, answer=None):
    cands = [PoolCandidate(problem_id="q", index=i, text=f"t{i}", reward=r, correct=None if correct is None else correct[i]) for i, r in enumerate(rewards)]
    return ProblemPool(Problem(id="q", question="?", answer=answer), cands)


def indices(pairs):
    return [(a.index, b.index) for a, b in pairs]


def test_dpo_pairs_correct_against_incorrect_by_reward(run_dir):
    # by reward: correct A .9, C .8; incorrect D .75, B .7 -> (A, D), (C, B); pool order would give (A, B), (C, D)
    records = export_records([str(run_dir)], "dpo").records
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in records] == [(A, D), (C, B)]
    assert [r["provenance"]["chosen"]["candidate"] for r in records] == [0, 3]
    assert [r["provenance"]["rejected"]["candidate"] for r in records] == [4, 2]
    assert records[0]["prompt"] == load_task("arith", split="test", limit=1)[0].chat()
    one = export_records([str(run_dir)], "dpo", ExportRules(max_per_problem=1)).records
    assert len(one) == 1 and one[0]["rejected"][0]["content"] == D


def test_dpo_without_gold_pairs_best_with_worst():
    # ranked by reward: 1 (.9), 0 (.5), 3 (.5), 4 (.3), 2 (.1) -> (1, 2), (0, 4); adjacent pairs would be (1, 0), (3, 4)
    assert indices(preference_pairs(pool([0.5, 0.9, 0.1, 0.5, 0.3]), ExportRules())) == [(1, 2), (0, 4)]
    assert indices(preference_pairs(pool([0.5, 0.5]), ExportRules())) == []  # a tie prefers nothing
    assert indices(preference_pairs(pool([0.2, 0.4, 0.3], correct=[True, False, False], answer="1"), ExportRules())) == [(0, 1)]


def test_dpo_refuses_sft_rules(run_dir):
    with pytest.raises(ValueError, match="--format dpo pairs candidates itself"):
        export_records([str(run_dir)], "dpo", ExportRules(top_k=1))


def test_prm_step_labels_from_shared_prefixes(tmp_path):
    right = "S1\n\nS2\n\nboxed 20"
    left_at_2 = "S1\n\nS2 wrong\n\nboxed 6"
    stopped = "S1\n\nS2"  # a wrong (unfinished) candidate that agrees with the correct one so far
    off_at_1 = "T1\n\nboxed 3"
    cands = [cand(right, "20", True, 0.9), cand(left_at_2, "6", False, 0.5), cand(stopped, None, False, 0.4), cand(off_at_1, "3", False, 0.1)]
    run = write_run(tmp_path / "run", [row(P0, cands, selected=(0, 0))])
    records = export_records([str(run)], "prm").records
    assert [r["labels"] for r in records] == [[True, True, True], [True, False, False], [True, True], [False, False]]
    assert records[1]["completions"] == ["S1", "S2 wrong", "boxed 6"]
    assert records[0]["prompt"] == load_task("arith", split="test", limit=1)[0].question
    # labels come from the whole pool: with --correct-only the wrong ones are gone but the right one keeps its labels
    only = export_records([str(run)], "prm", ExportRules(correct_only=True)).records
    assert [r["labels"] for r in only] == [[True, True, True]]


def test_formats_load_with_datasets_field_by_field(run_dir, tmp_path):
    import datasets
    from trl.data_utils import is_conversational

    problem = load_task("arith", split="test", limit=1)[0]
    for fmt, columns in [("sft", {"messages", "provenance"}), ("dpo", {"prompt", "chosen", "rejected", "provenance"}), ("prm", {"prompt", "completions", "labels", "provenance"})]:
        records = export_records([str(run_dir)], fmt).records
        path = write_jsonl_atomic(records, tmp_path / f"{fmt}.jsonl")
        ds = datasets.load_dataset("json", data_files=str(path), split="train")
        assert set(ds.column_names) == columns and len(ds) == len(records)
        for got, want in zip(ds, records, strict=True):
            assert {k: got[k] for k in columns - {"provenance"}} == {k: want[k] for k in columns - {"provenance"}}
        first = ds[0]
        if fmt == "sft":
            assert first["messages"][:-1] == problem.chat() and first["messages"][-1] == {"role": "assistant", "content": A}
            assert first["provenance"] == {"run": str(run_dir), "problem_id": P0, "strategy": "weighted", "n": 5, "seed": 0, "candidate": 0, "answer": "20", "correct": True, "reward": 0.9}
            assert is_conversational(first)
        elif fmt == "dpo":
            assert first["chosen"] == [{"role": "assistant", "content": A}] and first["rejected"] == [{"role": "assistant", "content": D}]
            assert first["provenance"]["rejected"]["candidate"] == 4 and is_conversational(first)
        else:
            assert first["completions"] == ["## Step 1: 13 + 7 = 20", "The final answer is $\\boxed{20}$."] and first["labels"] == [True, True]
            assert not is_conversational(first)  # TRL's stepwise-supervision format is plain text


def test_write_is_atomic_and_replaces(tmp_path):
    out = tmp_path / "d.jsonl"
    out.write_text("old, much longer content than the new one\n" * 10)
    write_jsonl_atomic([{"a": 1}], out)
    assert out.read_text() == '{"a": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]  # no temporary file left


def cli(capsys, *argv):
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize(
    "argv, rc, message",
    [
        pytest.param(["{tmp}/nope", "--format", "sft"], 1, "nope is not a directory", id="missing-run-dir"),
        pytest.param(["{tmp}/empty", "--format", "sft"], 1, "is not an eval run directory (no results.jsonl)", id="no-results"),
        pytest.param(["{tmp}/blank", "--format", "sft"], 1, "holds no results yet", id="empty-results"),
        pytest.param(["{run}", "--format", "kto"], 2, "unknown export format 'kto'; choose one of: dpo, prm, sft", id="unknown-format"),
        pytest.param(["{run}", "--format", "sft", "--out", "{run}/results.jsonl"], 1, "is inside the input run directory", id="over-the-input"),
        pytest.param(["{run}", "--format", "sft", "--out", "{tmp}"], 1, "is a directory", id="out-is-dir"),
        pytest.param(["{run}", "--format", "sft", "--top-k", "-1"], 2, "--top-k must be >= 0, got -1", id="negative-k"),
    ],
)
def test_bad_input_is_one_line(run_dir, tmp_path, capsys, argv, rc, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "results.jsonl").write_text("")
    before = (run_dir / "results.jsonl").read_text()
    argv = [a.format(tmp=tmp_path, run=run_dir) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out.jsonl")]
    got_rc, out, err = cli(capsys, "export", *argv)
    assert got_rc == rc and message in err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "out.jsonl").exists()
    assert (run_dir / "results.jsonl").read_text() == before


def test_cli_writes_and_reports(run_dir, tmp_path, capsys):
    out = tmp_path / "sft.jsonl"
    rc, stdout, _ = cli(capsys, "export", str(run_dir), "--format", "sft", "--correct-only", "--out", str(out))
    assert rc == 0 and stdout == f"wrote 3 sft records from 2 of 2 problems to {out}\n"
    assert [json.loads(line)["messages"][-1]["content"] for line in out.read_text().splitlines()] == [A, C, B]
