"""BOND's analytic best-of-N curves equal brute force over every N-tuple drawn with replacement."""

from __future__ import annotations

import itertools
import json

import pytest

from testtime.cli import main
from testtime.eval._row import EvalRow, Outcome
from testtime.eval.bon_curve import bon_curve, expected_best, measured_at, win_rate

# Ties on purpose (0.5 twice, with different correctness): a rule that sorts and breaks ties by position would
# give a different accuracy than the tie-group mean.
REWARDS = [0.5, 0.9, 0.1, 0.5, 0.3]
CORRECT = [True, False, False, False, True]


def brute(rewards, n, correct):
    """Mean over all m^n tuples of (max reward, accuracy of the best with tied bests averaged, win rate vs a base draw)."""
    m = len(rewards)
    tot_r = tot_a = tot_w = 0.0
    tuples = list(itertools.product(range(m), repeat=n))
    for t in tuples:
        best = max(rewards[i] for i in t)
        tied = [i for i in t if rewards[i] == best]
        tot_r += best
        tot_a += sum(correct[i] for i in tied) / len(tied)
        tot_w += sum(1.0 if best > b else 0.5 if best == b else 0.0 for b in rewards) / m
    k = len(tuples)
    return tot_r / k, tot_a / k, tot_w / k


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_analytic_equals_brute_force(n):
    r, a, w = brute(REWARDS, n, CORRECT)
    assert expected_best(REWARDS, n) == pytest.approx(r, abs=1e-12)
    assert expected_best(REWARDS, n, [float(c) for c in CORRECT]) == pytest.approx(a, abs=1e-12)
    assert win_rate(REWARDS, n) == pytest.approx(w, abs=1e-12)


def test_closed_form_values():
    # E[max of 2] by the sorted formula: sum r_(i) ((i/5)^2 - ((i-1)/5)^2) with r sorted .1 .3 .5 .5 .9
    want = sum(r * ((i / 5) ** 2 - ((i - 1) / 5) ** 2) for i, r in enumerate([0.1, 0.3, 0.5, 0.5, 0.9], start=1))
    assert expected_best(REWARDS, 2) == pytest.approx(want)
    assert win_rate(REWARDS, 1) == pytest.approx(0.5)
    assert measured_at(REWARDS, 1, CORRECT) == (0.5, 0.6, 1.0)  # first sample: beats .1 .3, ties .5 twice
    assert measured_at(REWARDS, 4, CORRECT) == (0.9, 0.9, 0.0)


def row(pid, rewards, correct, strategy="bon"):
    cands = [{"text": f"t{i}", "answer": None, "correct": c, "num_tokens": 1, "finish_reason": "stop", "score": r, "scores": [r]} for i, (r, c) in enumerate(zip(rewards, correct, strict=True))]
    return EvalRow(problem_id=pid, strategy=strategy, seed=0, by_n={1: Outcome(), 4: Outcome()}, candidates=cands).to_dict()


def test_run_curve_averages_rows_and_skips_unscored_strategies():
    other = [0.2, 0.2, 0.8, 0.4, 0.6]
    rows = [row("a", [None] * 5, CORRECT, strategy="majority"), row("a", REWARDS, CORRECT), row("b", other, [False, True, True, False, False])]
    curve = bon_curve(rows)
    assert curve.strategy == "bon" and curve.num_rows == 2 and curve.ns == [1, 2, 3, 4, 5]
    assert curve.reward[2] == pytest.approx((expected_best(REWARDS, 3) + expected_best(other, 3)) / 2)
    assert curve.win_rate[0] == pytest.approx(0.5)
    assert sorted(curve.measured) == [1, 4]
    assert curve.measured[4][0] == pytest.approx((0.9 + 0.8) / 2)


def test_cli_writes_plot_and_numbers(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text(json.dumps(row("a", REWARDS, CORRECT)) + "\n")
    assert main(["bon-curve", str(run)]) == 0
    out = capsys.readouterr().out
    assert (run / "bon_curve.png").read_bytes()[:4] == b"\x89PNG"
    numbers = json.loads((run / "bon_curve.json").read_text())
    assert numbers["reward"][1] == pytest.approx(expected_best(REWARDS, 2))
    assert out.splitlines()[1].split()[:3] == ["1", f"{expected_best(REWARDS, 1):.4f}", "0.500"]


def test_cli_refuses_unscored_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text(json.dumps(row("a", [None] * 5, CORRECT, strategy="majority")) + "\n")
    assert main(["bon-curve", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no rows of a sampling strategy with a reward on every candidate") and err.count("\n") == 1
