"""`testtime bench spr` pieces: the paper's improvement score, BoN-equivalent interpolation, the judge's win rate
(on httpx's MockTransport), the instructions task, and a whole resumable bench on scripted fakes."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from testtime import ValidationError
from testtime.cli import main
from testtime.engines import ScriptedEngine
from testtime.eval.judge import JudgeConfig, win_rate
from testtime.eval.spr_bench import (
    SprBenchConfig,
    bon_batch_steps,
    bon_equivalent_compute,
    improvement_score,
    run_spr_bench,
)
from testtime.scorers import ScriptedScorer
from testtime.tasks import Problem, load_task


def test_improvement_score_is_bon_n0_relative():
    base = [0.2, 0.6, 0.4, 1.0]
    assert improvement_score(1.0, base) == 100.0  # BoN-N0's own choice
    assert improvement_score(0.2, base) == 0.0  # its worst candidate
    assert improvement_score(0.6, base) == pytest.approx(50.0)
    assert improvement_score(1.4, base) == pytest.approx(150.0)
    assert improvement_score(0.5, [0.3, 0.3]) is None  # no range: left out


def test_bon_equivalent_interpolates_in_log_compute():
    bon = [(100.0, 100.0), (400.0, 120.0), (1600.0, 130.0)]
    assert bon_equivalent_compute(110.0, bon) == (pytest.approx(200.0), False)  # halfway in log: sqrt(100 * 400)
    assert bon_equivalent_compute(125.0, bon) == (pytest.approx(800.0), False)
    assert bon_equivalent_compute(130.0, bon) == (pytest.approx(1600.0), False)
    c, extrapolated = bon_equivalent_compute(140.0, bon)  # beyond BoN's best: the last segment, extended
    assert extrapolated and c == pytest.approx(1600.0 * 4.0)
    c, extrapolated = bon_equivalent_compute(90.0, bon)
    assert extrapolated and c == pytest.approx(math.exp(math.log(100) - 0.5 * math.log(4)))


def judge_transport(prefer: str):
    """A judge that always prefers the response containing `prefer` (so position swapping is visible)."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        content = body["messages"][0]["content"]
        a = content.split("[The Start of Assistant A's Answer]\n")[1].split("\n[The End")[0]
        b = content.split("[The Start of Assistant B's Answer]\n")[1].split("\n[The End")[0]
        verdict = "[[C]]" if (prefer in a) == (prefer in b) else ("[[A]]" if prefer in a else "[[B]]")
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": f"Because. {verdict}"}}]})

    return httpx.MockTransport(handler), seen


def test_judge_win_rate_with_position_swapping():
    transport, seen = judge_transport("good")
    config = JudgeConfig(base_url="http://judge.test/v1", model="judge-1")
    client = httpx.Client(base_url="http://judge.test/v1/", transport=transport)
    items = [("q1", "good answer", "bad answer"), ("q2", "bad answer", "good answer"), ("q3", "good", "good too")]
    res = win_rate(config, items, client=client)
    # q1: won in both orders (2 wins); q2: lost twice; q3: tie twice -> (2 + 0 + 1) / 6.
    assert res == {"win_rate": 0.5, "num_judgments": 6, "wins": 2, "losses": 2, "ties": 2, "invalid": 0}
    assert len(seen) == 6 and seen[0]["model"] == "judge-1" and seen[0]["temperature"] == 0
    one_way = win_rate(JudgeConfig(base_url="http://judge.test/v1", model="judge-1", swap=False), items[:1], client=client)
    assert one_way["num_judgments"] == 1 and one_way["win_rate"] == 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param({"model": "m"}, "needs `base_url`", id="no-url"),
        pytest.param({"base_url": "http://x/v1"}, "needs `model`", id="no-model"),
        pytest.param({"base_url": "http://x/v1", "model": "m", "prompt": "{question} {a}"}, r"must contain \{b\}", id="prompt"),
    ],
)
def test_bad_judge_config(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        JudgeConfig(**kwargs)


def test_instructions_task_is_built_in():
    problems = load_task("instructions")
    assert len(problems) == 40 and len({p.id for p in problems}) == 40
    assert problems[0].id == "instr-001" and problems[0].answer is None
    assert problems[0].messages[0]["role"] == "system" and problems[0].messages[-1] == {"role": "user", "content": problems[0].question}
    assert [p.id for p in load_task("instructions", limit=3)] == ["instr-001", "instr-002", "instr-003"]
    with pytest.raises(ValidationError, match="no difficulty levels"):
        load_task("instructions", levels=[1])


# -- a whole bench on fakes -------------------------------------------------------------------------------
# Each completion is "<q>xxxx...x." with a quality digit q drawn from the completion's seed; the scorer reads q.


def fake_engine():
    import random

    def handler(request, params, index):
        q = request.partial[1] if request.partial else random.Random(params.seed).randrange(10)
        return (f"<{q}>" + "x" * 27 + ".")[len(request.partial) :]

    return ScriptedEngine(handler)


def fake_scorer():
    return ScriptedScorer(lambda question, steps: [int(steps[-1][1]) / 10 if len(steps[-1]) > 1 else 0.0])


PROBLEMS = [Problem(id=f"p{i}", question=f"question {i}", answer=None) for i in range(3)]


def test_bench_runs_resumes_and_reports(tmp_path):
    config = SprBenchConfig(task="fake", limit=None, bon_n=[2, 4, 8], n=16, alphas=[0.5, 0.75], decision_tokens=[5], chunk=2, out=str(tmp_path / "b"), max_tokens=64)
    logs = []
    report = run_spr_bench(config, engine=fake_engine(), scorer=fake_scorer(), problems=PROBLEMS, progress=False, log=logs.append)
    rows = [json.loads(line) for line in (tmp_path / "b" / "results.jsonl").read_text().splitlines()]
    # SpR methods are named by their settings that differ from the defaults (n 16, decisions at 5 tokens).
    assert sorted((r["method"], r["problem_id"]) for r in rows) == sorted((m, p.id) for m in ["bon", "spr-0.5-n16-d5", "spr-0.75-n16-d5"] for p in PROBLEMS)
    assert [r.method for r in report.rows] == ["bon", "bon", "bon", "spr-0.5-n16-d5", "spr-0.75-n16-d5"]
    bon2 = report.rows[0]
    assert bon2.n == 2 and (bon2.score == 100.0 or report.num_scored_problems == 0)
    scores = [r.score for r in report.rows[:3]]
    assert scores == sorted(scores)  # BoN's best reward can only grow with N
    for r in report.rows[3:]:
        assert r.n == 16 and r.speedup == pytest.approx(r.bon_equivalent_compute / r.mean_compute_tokens)
    # SpR at alpha 0.5 generates 16 x 5 tokens, then 8 survivors run to 31 tokens (30 characters + ".").
    spr = [r for r in rows if r["method"] == "spr-0.5-n16-d5"][0]
    assert spr["rounds"][0] == {"num_tokens": 5, "num_live": 16, "num_finished": 0, "num_rejected": 8}
    assert sum(c["num_tokens"] for c in spr["candidates"]) == 16 * 5 + 8 * (31 - 5)
    assert (tmp_path / "b" / "spr_vs_bon.png").stat().st_size > 1000
    assert any("LLM-judge win rate: skipped" in line for line in logs)
    # Rerunning resumes: nothing is generated again.
    eng = fake_engine()
    again = run_spr_bench(config, engine=eng, scorer=fake_scorer(), problems=PROBLEMS, progress=False, log=lambda s: None)
    assert eng.usage.num_calls == 0 and again.table == report.table
    with pytest.raises(ValidationError, match="different best-of-N settings"):
        run_spr_bench(SprBenchConfig(task="fake", limit=None, bon_n=[2, 4], n=16, alphas=[0.5], out=str(tmp_path / "b")), engine=eng, scorer=fake_scorer(), problems=PROBLEMS, progress=False, log=lambda s: None)
    # Another SpR schedule into the same directory reuses the BoN rows (only SpR generates) and joins the table.
    eng = fake_engine()
    other = SprBenchConfig(task="fake", limit=None, bon_n=[2, 4, 8], n=16, alphas=[0.5], decision_tokens=[3], chunk=2, out=str(tmp_path / "b"), max_tokens=64)
    both = run_spr_bench(other, engine=eng, scorer=fake_scorer(), problems=PROBLEMS, progress=False, log=lambda s: None)
    assert eng.usage.num_generated_tokens == sum(r.mean_generated_tokens for r in both.rows if r.method == "spr-0.5-n16-d3") * len(PROBLEMS)
    assert [r.method for r in both.rows] == ["bon", "bon", "bon", "spr-0.5-n16-d3", "spr-0.5-n16-d5", "spr-0.75-n16-d5"]


def test_bon_batch_steps_by_hand():
    """The paper's GPU-batch cost: BoN-N in batches of batch_n rows one after another, each as long as its
    longest row (an end-of-sequence costs its step)."""
    cands = [{"num_tokens": t, "finish_reason": f} for t, f in [(10, "eos"), (30, "length"), (5, "eos"), (7, "eos"), (20, "eos")]]
    assert bon_batch_steps(cands, 5, 2) == 30 + 8 + 21  # [11, 30] [6, 8] [21]
    assert bon_batch_steps(cands, 4, 2) == 38
    assert bon_batch_steps(cands, 4, 8) == 30  # one batch of 4 rows


@pytest.mark.parametrize(
    "argv, match",
    [
        pytest.param(["--alpha", "0.3,1.2"], r"`alpha` must be in \[0, 1\)", id="alpha"),
        pytest.param(["--bon-n", "8,16", "--baseline-n", "4"], r"--baseline-n must be one of", id="baseline"),
        pytest.param(["--n", "auto"], r"set `kv_budget` too", id="auto-needs-budget"),
        pytest.param(["--decision-tokens", "64,32"], r"`decision_tokens` must be increasing", id="schedule"),
    ],
)
def test_cli_bad_input_is_one_line(argv, match, capsys):
    assert main(["bench", "spr", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    import re

    assert re.search(match, err)


def test_spr_replay_on_stored_bon_samples_equals_the_live_strategy(tmp_path):
    """The likelihood reward: SpR on n of BoN's stored samples, replayed, equals SpR run live (schedule and
    memory-triggered), candidate for candidate."""
    from test_confidence import confident_engine

    from testtime.eval.spr_replay import simulate_spr
    from testtime.scorers import load_scorer
    from testtime.strategies import SpeculativeRejection, SpeculativeRejectionParams

    profiles = {"q": [[-0.1 * (1 + (j * 7) % 5)] * 6 + [-0.05 * (1 + (j * 3) % 7)] * (10 + 5 * (j % 4)) for j in range(8)]}
    problem = Problem(id="p", question="q")
    config = SprBenchConfig(task="fake", limit=None, bon_n=[2, 4, 8], n=8, alphas=[0.5], decision_tokens=[5, 9], chunk=1, out=str(tmp_path / "b"), max_tokens=64)
    run_spr_bench(config, engine=confident_engine(profiles), scorer=load_scorer("confidence:logprob"), problems=[problem], progress=False, log=lambda s: None)
    rows = {r["method"]: r for r in map(json.loads, (tmp_path / "b" / "results.jsonl").read_text().splitlines())}
    for params, kv in [(SpeculativeRejectionParams(n=8, alpha=0.5, decision_tokens=[5, 9]), None), (SpeculativeRejectionParams(n=8, alpha=0.7, decision_tokens=[3, 4, 12]), None), (SpeculativeRejectionParams(n=8, alpha=0.5, kv_budget=120), 120)]:
        engine = confident_engine(profiles)
        engine.encode = lambda request: list(request.messages[-1]["content"])  # a one-token prompt, for the memory rule
        live_spr = SpeculativeRejection(engine, load_scorer("confidence:logprob"), params=params)
        live = live_spr.solve(problem)[0]
        prompt = 1 if kv else 0  # the scripted engine's prompt: the one-character question
        replay = simulate_spr(rows["bon"]["candidates"], params, kv=kv, prompt=prompt)
        assert [c["num_tokens"] for c in replay["candidates"]] == [c.num_tokens for c in live.candidates]
        assert [c["score"] for c in replay["candidates"]] == pytest.approx([c.score for c in live.candidates])
        assert replay["selected"] == live.selected and replay["usage"]["num_generated_tokens"] == live.usage.num_generated_tokens
        assert [list(r.values()) for r in replay["rounds"]] == [[x.num_tokens, x.num_live, x.num_finished, x.num_rejected] for x in live_spr.rounds["p"]]
    assert rows["spr-0.5-n8-d5.9"]["selected"] == simulate_spr(rows["bon"]["candidates"], SpeculativeRejectionParams(n=8, alpha=0.5, decision_tokens=[5, 9]))["selected"]
