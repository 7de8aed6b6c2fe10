"""Faults and bad input around eval runs: one writer per run directory, readers that never repair, duplicate rows,
what resume checks, corrupt files, wrong types in task files, and CLI input that used to end in a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from argparse import Namespace
from pathlib import Path

import pytest
from _rows import without_measurements

from testtime import DataError, ValidationError
from testtime.cli import main
from testtime.engines import ScriptedEngine
from testtime.eval import EvalConfig, ResultsFile, run_eval
from testtime.eval._merge import merge_runs
from testtime.eval._results import drop_duplicates, run_dir_lock
from testtime.eval.optimize import extra_run_rows
from testtime.eval.report import load_run
from testtime.scorers import ScriptedScorer
from testtime.tasks import Problem, load_task

# Problem k's candidate i answers ANSWERS[k][i]; gold is "5".
ANSWERS = [["5", "3", "5", "5"], ["3", "5", "3", "5"], ["3", "3", "5", "5"], ["7", "5", "5", "9"], ["5", "5", "5", "5"], ["3", "3", "3", "5"]]
PROBLEMS = [Problem(id=f"p{k}", question=f"q{k}", answer="5") for k in range(len(ANSWERS))]
QUIET = dict(progress=False, log=lambda *_: None)


def handler(request, params, index):
    k = int(request.messages[-1]["content"][1:])
    return f"Step 1: think.\n\nTherefore, the final answer is: $\\boxed{{{ANSWERS[k][index]}}}$."


def scorer():
    return ScriptedScorer(lambda q, steps: [0.9 if "{9}" in steps[-1] else 0.6 if "{5}" in steps[-1] else 0.4])


def config(out, **kw) -> EvalConfig:
    return EvalConfig(**{**dict(task="scripted", strategies=["majority", "bon"], n=[1, 4], out=str(out), batch_problems=2), **kw})


def run(cfg, engine=None, problems=PROBLEMS, **kw):
    return run_eval(cfg, engine=engine or ScriptedEngine(handler), scorer=scorer(), problems=problems, **{**QUIET, **kw})


def summary(report) -> list[tuple]:
    return [(r.strategy, r.n, r.num_rows, r.accuracy, r.ci_low, r.ci_high) for r in report.summary]


# -- readers never repair; only the writer does ------------------------------------------------------------------


def test_load_skips_a_torn_last_line_without_touching_the_file_and_append_repairs_it(tmp_path):
    path = tmp_path / "r.jsonl"
    f = ResultsFile(path)
    f.append([{"a": 1}, {"a": 2}])
    with open(path, "ab") as fh:
        fh.write(b'{"a": 3, "b"')  # a writer in the middle of its row (or killed there)
    before = path.read_bytes()
    assert f.load() == [{"a": 1}, {"a": 2}]
    assert path.read_bytes() == before  # a reader leaves the half-written row for its writer
    f.append([{"a": 4}])
    assert path.read_bytes() == b'{"a": 1}\n{"a": 2}\n{"a": 4}\n'
    with open(path, "ab") as fh:
        fh.write(b'{"a": 5}')  # a complete row that lost only its newline
    assert f.load()[-1] == {"a": 5} and path.read_bytes().endswith(b'{"a": 5}')
    f.append([{"a": 6}])
    assert f.load() == [{"a": 1}, {"a": 2}, {"a": 4}, {"a": 5}, {"a": 6}]


def test_report_merge_optimize_and_difficulty_read_a_live_run_without_truncating_it(tmp_path, capsys):
    cfg = config(tmp_path / "run")
    run(cfg)
    path = tmp_path / "run" / "results.jsonl"
    complete = path.read_bytes()
    rows = complete.splitlines(keepends=True)
    # The live eval has written two chunks of three and is halfway through the first row of the last one.
    path.write_bytes(b"".join(rows[:8]) + rows[8][: len(rows[8]) // 2])
    live = path.read_bytes()
    assert len(load_run(tmp_path / "run").rows) == 8
    assert len(extra_run_rows([str(tmp_path / "run")], cfg, strategies=["majority"])) == 4
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "report.html")]) == 0
    assert main(["difficulty", "--run", str(tmp_path / "run"), "--samples", "4", "--output", str(tmp_path / "d.json")]) == 0
    assert path.read_bytes() == live  # every reader left the writer's half row in place
    capsys.readouterr()
    # The writer resumes: it cuts its own torn row and the run ends exactly as an untouched one.
    assert summary(run(cfg)) == summary(run(config(tmp_path / "fresh")))
    assert path.read_bytes().startswith(b"".join(rows[:8]))
    assert [without_measurements(r) for r in ResultsFile(path).load()] == [without_measurements(json.loads(r)) for r in rows]


def test_merge_reads_shards_without_repairing_them(tmp_path):
    for i in range(3):
        run(config(tmp_path / f"s{i}", shard=f"{i}/3"))
    shard = tmp_path / "s1" / "results.jsonl"
    with open(shard, "ab") as fh:
        fh.write(b'{"problem_id": "p2", "stra')
    live = shard.read_bytes()
    merged = merge_runs([tmp_path / f"s{i}" for i in range(3)], tmp_path / "merged", log=lambda *_: None)
    assert shard.read_bytes() == live
    assert summary(merged) == summary(run(config(tmp_path / "full")))


def test_a_corrupt_middle_line_says_how_to_keep_the_rows_before_it_and_that_works(tmp_path):
    cfg = config(tmp_path / "run")
    run(cfg)
    path = tmp_path / "run" / "results.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:5]) + "garbage\n" + "".join(lines[5:]))
    with pytest.raises(DataError) as info:
        run(cfg)
    p = str(path)
    assert str(info.value) == (
        f"{p}: line 6 is not a JSON object, and complete rows follow it, so the file is corrupted, not torn by a crash. "
        f"To keep the 5 rows before it and redo the rest, run `head -n 5 {p} > {p}.kept && mv {p}.kept {p}` "
        "and rerun the command; to start over, move the run directory away"
    )
    command = str(info.value).split("`")[1]
    subprocess.run(["sh", "-c", command], check=True)
    report = run(cfg)
    assert path.read_text().startswith("".join(lines[:5]))  # the kept rows, byte for byte
    assert len(report.rows) == len(lines) and summary(report) == summary(run(config(tmp_path / "fresh")))


# -- one writer per run directory, duplicates counted once -------------------------------------------------------

HOLD = textwrap.dedent(
    """
    import sys, time
    from testtime.eval._results import run_dir_lock
    with run_dir_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
    """
)


@pytest.fixture
def holder(tmp_path):
    """Another process holding a run directory's lock, killed with SIGKILL at the end."""
    procs = []

    def hold(directory: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_writer_gets_a_one_line_error_and_a_killed_writer_leaves_no_stale_lock(tmp_path, holder, capsys):
    out = tmp_path / "run"
    proc = holder(out)
    with pytest.raises(DataError) as info:
        run(config(out))
    assert str(info.value) == (
        f"{out} is in use by another testtime process (pid {proc.pid}) writing the same run; wait for it to finish "
        "(rerunning then resumes) or use another --out"
    )
    assert not (out / "results.jsonl").exists() and not (out / "run.json").exists()
    code = main(["eval", "--task", "arith", "--limit", "2", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err == f"error: {info.value}\n"  # before the model loads
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(run(config(out)).rows) == len(PROBLEMS) * 2  # kill -9 released the lock


def test_rows_written_twice_by_two_old_writers_count_once(tmp_path):
    once = run(config(tmp_path / "once"))
    out = tmp_path / "twice"
    run(config(out))
    path = out / "results.jsonl"
    path.write_text(path.read_text() * 2)  # what two evals into one --out wrote before the lock
    notes = []
    again = run(config(out), log=notes.append)
    assert summary(again) == summary(once)  # 6 problems, not 12: same accuracy and interval
    assert f"note: {path} holds 12 extra copies of rows (same problem, strategy and seed, written by two evals at once); each row counts once" in notes
    assert len(load_run(out).rows) == 12
    rows, dropped = drop_duplicates([{"problem_id": "a", "strategy": "s", "seed": 0, "x": 1}, {"problem_id": "a", "strategy": "s", "seed": 0, "x": 2}, {"problem_id": "a", "strategy": "s", "seed": 1}])
    assert (rows, dropped) == ([{"problem_id": "a", "strategy": "s", "seed": 0, "x": 1}, {"problem_id": "a", "strategy": "s", "seed": 1}], 1)


def test_bad_input_after_the_lock_leaves_no_empty_run_directory(tmp_path):
    with pytest.raises(DataError, match="gave no problems"):
        run(config(tmp_path / "new"), problems=[])
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    with pytest.raises(DataError, match="gave no problems"):
        run(config(tmp_path / "old"), problems=[])
    assert (tmp_path / "old").is_dir()  # a directory the user made stays


@pytest.mark.parametrize(
    "make, message",
    [
        pytest.param(lambda d: (d / "f").write_text("x") and d / "f", "--out {out} is a file, not a directory; pass a directory for the run", id="file"),
        pytest.param(lambda d: (d / "f").write_text("x") and d / "f" / "run", "--out {out}: a parent of it is a file, not a directory; pass another directory", id="under-a-file"),
    ],
)
def test_an_out_that_cannot_be_a_directory_is_one_line(tmp_path, make, message):
    out = make(tmp_path)
    with pytest.raises(DataError) as info, run_dir_lock(out):
        pass
    assert str(info.value) == message.format(out=out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_out_is_one_line(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    with pytest.raises(DataError, match=r"cannot be written \(Permission denied\)"), run_dir_lock(locked / "run"):
        pass


# -- what resume checks --------------------------------------------------------------------------------------------

FP32 = {"engine": "transformers", "device": "cpu", "dtype": "float32"}
BF16 = {"engine": "transformers", "device": "cpu", "dtype": "bfloat16"}


def test_resume_refuses_another_dtype_device_or_engine(tmp_path):
    run(config(tmp_path / "run", backend=FP32))
    for other, shown in [(BF16, "bfloat16"), ({**FP32, "device": "cuda"}, "cuda"), ({"engine": "openai", "endpoint": "chat"}, "openai")]:
        with pytest.raises(ValidationError) as info:
            run(config(tmp_path / "run", backend=other))
        assert str(info.value).startswith(f"{tmp_path / 'run'} holds a run with different settings (backend: {FP32!r} there, {other!r} now)") and shown in str(info.value)
    assert len(run(config(tmp_path / "run", backend=FP32)).rows) == 12  # the same backend resumes


def test_a_run_stored_before_the_backend_was_recorded_resumes_and_records_it(tmp_path):
    out = tmp_path / "run"
    run(config(out))
    meta = json.loads((out / "run.json").read_text())
    assert "backend" not in meta["identity"]
    run(config(out, backend=BF16))
    assert json.loads((out / "run.json").read_text())["identity"]["backend"] == BF16
    with pytest.raises(ValidationError, match="backend"):
        run(config(out, backend=FP32))
    assert len(run(config(out)).rows) == 12  # a caller's own engine (no backend given) is not checked


def test_results_without_run_json_are_refused(tmp_path):
    out = tmp_path / "run"
    run(config(out))
    (out / "run.json").unlink()
    before = (out / "results.jsonl").read_bytes()
    with pytest.raises(DataError) as info:
        run(config(out, n=[1, 2]))
    assert str(info.value) == f"{out} holds results.jsonl but no run.json, so the settings its rows were made with are unknown; restore run.json, or move results.jsonl away to start over"
    assert (out / "results.jsonl").read_bytes() == before


def test_backend_identity_reads_the_loaded_engine():
    import torch
    from _tiny import make_llama, make_tokenizer

    from testtime.cli._engine_args import backend_identity
    from testtime.engines import TransformersEngine

    tok = make_tokenizer()
    bf16 = TransformersEngine(make_llama(tok).to(torch.bfloat16), tokenizer=tok, device="cpu")
    fp32 = TransformersEngine(make_llama(tok), tokenizer=tok, device="cpu")
    assert backend_identity(Namespace(engine="transformers"), bf16) == BF16
    assert backend_identity(Namespace(engine="transformers"), fp32) == FP32
    args = Namespace(engine="openai", endpoint="completions", extra_body={"min_p": 0.1})
    assert backend_identity(args, None) == {"engine": "openai", "endpoint": "completions", "extra_body": {"min_p": 0.1}}


# -- task files ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, message",
    [
        pytest.param({"problem": "1+2", "answer": ["2", "3"]}, "field 'answer' must be a string or a number, got list [\"2\", \"3\"]", id="answer-list"),
        pytest.param({"problem": "1+2", "answer": None}, "field 'answer' must be a string or a number, got null null", id="answer-null"),
        pytest.param({"problem": "1+2", "answer": True}, "field 'answer' must be a string or a number, got bool true", id="answer-bool"),
        pytest.param({"problem": "1+2", "answer": {"value": 3}}, "field 'answer' must be a string or a number, got dict {\"value\": 3}", id="answer-object"),
        pytest.param({"problem": ["1+2"], "answer": "3"}, "field 'problem' must be a string, got list [\"1+2\"]", id="problem-list"),
        pytest.param({"problem": 12, "answer": "3"}, "field 'problem' must be a string, got int 12", id="problem-number"),
    ],
)
def test_jsonl_fields_of_the_wrong_type_are_refused_with_line_and_field(tmp_path, line, message):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"problem": "1+1", "answer": "2"}) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(DataError) as info:
        load_task("jsonl", data=str(data))
    assert str(info.value) == f"{data} line 2: {message}"


def test_jsonl_numbers_become_answers_and_ids(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"problem": "1+1", "answer": 2, "id": 7}\n{"problem": "5/2", "answer": 2.5, "id": "b"}\n')
    problems = load_task("jsonl", data=str(data), id_field="id")
    assert [(p.id, p.answer) for p in problems] == [("7", "2"), ("b", "2.5")]


def test_a_non_utf8_data_file_names_the_line_and_byte(tmp_path, capsys):
    data = tmp_path / "latin1.jsonl"
    data.write_bytes(b'{"problem": "1+1", "answer": "2"}\n{"problem": "caf\xe9", "answer": "3"}\n')
    with pytest.raises(DataError) as info:
        load_task("jsonl", data=str(data))
    assert str(info.value) == f"{data} line 2: not UTF-8 text (byte 0xe9 at column 17); JSONL files are UTF-8: re-encode it, e.g. `iconv -f latin1 -t utf-8`"
    assert main(["eval", "--task", "jsonl", "--data", str(data), "--out", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err == f"error: {info.value}\n"


# -- CLI input that used to end in a traceback ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, code, message",
    [
        pytest.param(["solve", "1+1", "--device", "tpu"], 2, "error: --device must be cpu, cuda, cuda:N or mps, got 'tpu'.", id="device-tpu"),
        pytest.param(["solve", "1+1", "--device", "xla"], 2, "error: --device 'xla' is not available on this machine (available: cpu", id="device-absent"),
        pytest.param(["solve", "1+1", "--max-tokens", "0"], 2, "error: `max_tokens` must be an integer >= 1, got 0.", id="solve-max-tokens-0"),
        # Spec and budget are checked before the model loads (the model path does not exist: a later check would
        # report that instead).
        pytest.param(["solve", "1+1", "--strategy", "majority:n=4", "--n", "8", "--model", "/no/such/model"], 2, "error: strategy 'majority': the budget `n` is given twice (4 in its params, 8 as the budget); give it once.", id="solve-n-twice"),
        pytest.param(["solve", "1+1", "--strategy", "beam:beam_width=3", "--model", "/no/such/model"], 2, "error: `n` must be a multiple of `beam_width` (3), got 8;", id="solve-beam-width-not-dividing-n"),
        pytest.param(["serve", "--port", "70000"], 2, "error: --port must be in 0..65535 (0 picks a free port), got 70000.", id="port-high"),
        pytest.param(["serve", "--port", "-1"], 2, "error: --port must be in 0..65535 (0 picks a free port), got -1.", id="port-negative"),
        pytest.param(["serve", "--max-tokens", "0"], 2, "error: `default_max_tokens` must be an integer >= 1, got 0.", id="serve-max-tokens-0"),
        pytest.param(["train-prm", "--chunk-size", "0"], 2, "error: --chunk-size must be >= 1, got 0.", id="chunk-size-0"),
    ],
)
def test_cli_bad_input_is_one_line_not_a_traceback(argv, code, message, capsys, tmp_path):
    if argv[0] == "train-prm":
        argv = [*argv, "--out", str(tmp_path / "prm")]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_cli_out_paths_that_cannot_be_written_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["eval", "--task", "arith", "--limit", "2", "--out", str(blocker), "--no-progress"]) == 1
    assert capsys.readouterr().err == f"error: --out {blocker} is a file, not a directory; pass a directory for the run\n"
    for i in range(2):
        run(config(tmp_path / f"s{i}", shard=f"{i}/2"))
    assert main(["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--out", str(blocker)]) == 1
    assert capsys.readouterr().err == f"error: --out {blocker} is a file, not a directory; pass a directory for the run\n"
    assert main(["report", str(tmp_path / "s0"), "--out", str(blocker / "report.html")]) == 1
    assert capsys.readouterr().err == f"error: {blocker}: File exists\n"


def test_cli_temperature_must_be_finite(capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval", "--temperature", "inf"])
    assert info.value.code == 2 and "--temperature takes a finite number, got 'inf'" in capsys.readouterr().err
