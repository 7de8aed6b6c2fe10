"""`testtime eval`, `solve`, `serve` and `optimize` run to completion on a tiny random model saved to a
directory (`--model DIR`, CPU, 8 new tokens) and write or print what they should: the same rows, candidates
and replies as the library called directly with the same settings, and policy and difficulty files whose
fields follow from the flags and the run's own rows."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from _rows import without_measurements
from _tiny import make_llama, make_tokenizer

from testtime.cli import main
from testtime.engines import SamplingParams, TransformersEngine
from testtime.eval import EvalConfig, run_eval
from testtime.scorers import load_scorer, reduce_scores
from testtime.strategies import SamplingStrategyParams, get_strategy
from testtime.tasks import GSM8K_SYSTEM_PROMPT, Problem, build_messages

QUESTIONS = [("What is 5 + 7?", "12"), ("What is 6 * 7?", "42"), ("What is 3 + 4?", "7")]
SCORER = "confidence:mean"  # needs no reward model: the generator's own logprobs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-model")
    tok = make_tokenizer()
    make_llama(tok, seed=0).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "arith.jsonl"
    path.write_text("".join(json.dumps({"problem": q, "answer": a}) + "\n" for q, a in QUESTIONS))
    return path


@pytest.fixture(scope="module")
def engine(model_dir):
    return TransformersEngine(str(model_dir), device="cpu")


def model_flags(model_dir) -> list[str]:
    return ["--model", str(model_dir), "--device", "cpu", "--max-tokens", "8", "--scorer", SCORER]


def test_eval_writes_the_rows_the_library_writes_and_resumes(model_dir, data, engine, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["eval", "--task", "jsonl", "--data", str(data), *model_flags(model_dir), "--strategy", "majority,weighted", "--n", "1,2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    lines = (out / "results.jsonl").read_text().splitlines()
    rows = [json.loads(x) for x in lines]
    ids = [f"arith-test-{k}" for k in (1, 2, 3)]
    assert [(r["problem_id"], r["strategy"]) for r in rows] == [(pid, s) for pid in ids for s in ("majority", "weighted")]
    for r in rows:
        assert sorted(r["by_n"]) == ["1", "2"] and len(r["candidates"]) == 2
        assert all(0 < c["num_tokens"] <= 8 and c["score"] == pytest.approx(reduce_scores(c["scores"])) for c in r["candidates"])
        assert r["by_n"]["2"]["num_generated_tokens"] == sum(c["num_tokens"] for c in r["candidates"])
    # Majority and weighted share one generation per problem.
    assert rows[0]["candidates"] == rows[1]["candidates"]
    # The table: a line per (strategy, n), each over the 3 problems.
    table = [line.split() for line in printed.splitlines() if re.match(r"^(majority|weighted)\s+\d", line)]
    assert [(t[0], int(t[1]), int(t[-1])) for t in table] == [("majority", 1, 3), ("majority", 2, 3), ("weighted", 1, 3), ("weighted", 2, 3)]
    assert f"results: {out / 'results.jsonl'}" in printed
    assert (out / "summary.md").read_text().count("\n") >= 6 and json.loads((out / "summary.json").read_text())[0]["num_rows"] == 3
    # The flags reach the engine, sampler and scorer: the library with the same settings writes the same rows.
    config = EvalConfig(task="jsonl", data=str(data), strategies=["majority", "weighted"], n=[1, 2], scorer=SCORER, model=str(model_dir), max_tokens=8, out=str(tmp_path / "lib"))
    report = run_eval(config, engine=engine, progress=False, log=lambda *_: None)
    assert [without_measurements(r) for r in report.rows] == [without_measurements(r) for r in rows]
    # Rerunning the same command resumes a finished run: nothing is added or rewritten.
    assert main(argv) == 0
    assert (out / "results.jsonl").read_text().splitlines() == lines
    assert [t[:2] for t in (line.split() for line in capsys.readouterr().out.splitlines() if re.match(r"^(majority|weighted)\s+\d", line))] == [t[:2] for t in table]


CANDIDATE_LINE = re.compile(r"^([* ]) \[\s*(\d+)\] answer=(\S+)\s+score=\s*(\S+)\s+tokens=(\d+)")


def test_solve_prints_every_candidate_and_the_chosen_answer(model_dir, engine, capsys):
    question = "Tom has 5 apples and buys 7 more. How many apples does he have?"
    assert main(["solve", question, "--task", "gsm8k", *model_flags(model_dir), "--strategy", "weighted", "--n", "4", "--seed", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    shown = [CANDIDATE_LINE.match(line).groups() for line in printed if CANDIDATE_LINE.match(line)]
    # What the library gives for the same problem, strategy, scorer, sampling and seed.
    problem = Problem(id="cli", question=question, messages=build_messages(question, system_prompt=GSM8K_SYSTEM_PROMPT), last_number_fallback=True)
    sampling = SamplingParams(temperature=0.8, top_p=1.0, max_tokens=8)
    strategy = get_strategy("weighted")(engine, load_scorer(SCORER, engine=engine), params=SamplingStrategyParams(n=4), sampling=sampling, seed=3)
    want = strategy.solve(problem)[0]
    assert [(int(i), a, float(s), int(t)) for _, i, a, s, t in shown] == [(c.index, str(c.answer), round(c.score, 3), c.num_tokens) for c in want.candidates]
    assert [i for mark, i, *_ in shown if mark == "*"] == ([] if want.selected is None else [str(want.selected)])
    summary = next(line for line in printed if line.startswith("answer: "))
    assert summary.startswith(f"answer: {want.answer}  (weighted, n=4, {want.usage.num_generated_tokens} generated tokens")


def test_solve_runs_optimal_with_a_policy_and_refuses_it_without_one(model_dir, engine, tmp_path, capsys):
    from testtime.strategies import OptimalStrategy, Policy, PolicyEntry

    question = "What is 6 * 7?"
    # Without --policy: one line, exit 2, before the model loads (this model path does not exist).
    assert main(["solve", question, "--strategy", "optimal", "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err == "error: strategy 'optimal' needs --policy FILE (written by `testtime optimize`).\n"
    # With one: probe 2 samples, then every level's choice is weighted at N=4, as the library does it.
    policy = Policy(entries=[PolicyEntry(level=lv, n=4, strategy="weighted") for lv in range(1, 6)], edges=[0.2, 0.4, 0.6, 0.8], num_probe=2)
    path = policy.save(tmp_path / "policy.json")
    assert main(["solve", question, "--task", "gsm8k", *model_flags(model_dir), "--strategy", "optimal", "--policy", str(path), "--n", "4", "--seed", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    shown = [CANDIDATE_LINE.match(line).groups() for line in printed if CANDIDATE_LINE.match(line)]
    problem = Problem(id="cli", question=question, messages=build_messages(question, system_prompt=GSM8K_SYSTEM_PROMPT), last_number_fallback=True)
    sampling = SamplingParams(temperature=0.8, top_p=1.0, max_tokens=8)
    want = OptimalStrategy(engine, load_scorer(SCORER, engine=engine), policy=policy, sampling=sampling, seed=3).at_budget(4).solve(problem)[0]
    assert len(shown) == 4 and [(int(i), a, int(t)) for _, i, a, _, t in shown] == [(c.index, str(c.answer), c.num_tokens) for c in want.candidates]
    assert next(line for line in printed if line.startswith("answer: ")).startswith(f"answer: {want.answer}  (optimal, n=4,")


def test_serve_answers_chat_completions_with_the_flags_defaults(model_dir, monkeypatch, capsys):
    import uvicorn

    from testtime.serve import ServerThread

    got = {}

    def run(app, **kwargs):
        """Instead of blocking in uvicorn: serve the app on a free port, ask it twice, stop."""
        got["kwargs"] = kwargs
        with ServerThread(app) as srv:
            got["models"] = httpx.get(srv.url + "/v1/models", timeout=30).json()
            body = {"model": "tiny", "messages": [{"role": "user", "content": "What is 5 + 7?"}], "seed": 11, "return_candidates": True}
            got["replies"] = [httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=60) for _ in range(2)]

    monkeypatch.setattr(uvicorn, "run", run)
    argv = ["serve", *model_flags(model_dir), "--served-model-name", "tiny", "--strategy", "weighted", "--budget", "3", "--port", "0", "--log-level", "warning"]
    assert main(argv) == 0
    assert got["kwargs"]["port"] == 0 and got["kwargs"]["host"] == "127.0.0.1"
    assert [m["id"] for m in got["models"]["data"]] == ["tiny"]
    first, second = got["replies"]
    assert first.status_code == second.status_code == 200
    body = first.json()
    extra = body["testtime"]
    assert body["object"] == "chat.completion" and body["model"] == "tiny"
    assert (extra["strategy"], extra["budget"], extra["num_candidates"]) == ("weighted", 3, 3)  # --strategy, --budget
    cands = extra["candidates"]
    assert all(0 < c["num_tokens"] <= 8 for c in cands)  # --max-tokens is the default max_tokens
    assert body["choices"][0]["message"]["content"] == cands[extra["selected"] if extra["selected"] is not None else 0]["text"]
    assert body["usage"]["completion_tokens"] == sum(c["num_tokens"] for c in cands)
    # A seeded request is reproducible.
    assert second.json()["testtime"]["candidates"] == cands and second.json()["choices"] == body["choices"]
    assert "warning" not in capsys.readouterr().err  # loopback: no exposure warning


def test_optimize_writes_a_policy_for_every_level_and_budget(model_dir, data, tmp_path, capsys):
    out = tmp_path / "opt"
    argv = ["optimize", "--task", "jsonl", "--data", str(data), *model_flags(model_dir), "--strategies", "majority,weighted", "--n", "2,4", "--probe-samples", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    policy = json.loads((out / "policy.json").read_text())
    assert f"policy: {out / 'policy.json'}" in printed and f"difficulty: {out / 'difficulty.json'}" in printed
    assert (policy["task"], policy["split"], policy["model"], policy["scorer"]) == ("jsonl", "test", str(model_dir), SCORER)
    assert policy["sampling"] == {"temperature": 0.8, "top_p": 1.0, "max_tokens": 8}
    assert (policy["num_probe"], policy["reduction"], policy["bins"], policy["sources"]) == (2, "last", "predicted", [str(out)])
    assert sorted((e["level"], e["n"]) for e in policy["entries"]) == [(level, n) for level in range(1, 6) for n in (2, 4)]
    assert all(e["strategy"] in ("majority", "weighted") for e in policy["entries"])
    # The predicted level of a problem is the mean reduced score of its first 2 samples; each level's entries
    # count the dev problems given that level.
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    difficulty = {p["problem_id"]: p for p in json.loads((out / "difficulty.json").read_text())["problems"]}
    for r in rows:
        probe = [c["score"] for c in r["candidates"][:2]]
        assert difficulty[r["problem_id"]]["predicted_score"] == pytest.approx(sum(probe) / 2)
    for e in policy["entries"]:
        assert e["num_problems"] == sum(p["predicted_level"] == e["level"] for p in difficulty.values())
