"""Difficulty: the unbiased pass@k estimator, quantile binning (ties, edges), oracle and predicted levels from
stored runs, the difficulty file, and the CLI on a stored run."""

from __future__ import annotations

import json

import pytest
from test_optimize import dev_rows

from testtime import DataError, ValidationError
from testtime.cli import main
from testtime.eval.difficulty import Difficulty, compute_difficulty, pass_at_k, quantile_edges, rank_levels
from testtime.strategies.optimal import level_from_edges


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        pytest.param(16, 4, 1, 0.25, id="pass@1=c/n"),
        pytest.param(4, 1, 2, 0.5, id="1-C(3,2)/C(4,2)"),
        pytest.param(5, 0, 3, 0.0, id="none-correct"),
        pytest.param(5, 3, 3, 1.0, id="n-c<k"),
        pytest.param(10, 2, 4, 1 - 70 / 210, id="1-C(8,4)/C(10,4)"),
    ],
)
def test_pass_at_k_unbiased_estimator(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValidationError, match="pass@k needs 0 <= c <= n"):
        pass_at_k(4, 5, 1)


def test_quantile_edges_and_levels_put_a_fifth_on_each_level():
    values = [i / 9 for i in range(10)]
    edges = quantile_edges(values)
    assert edges == pytest.approx([0.2, 0.4, 0.6, 0.8])
    levels = [level_from_edges(v, edges) for v in values]
    assert levels == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]  # higher score = easier = lower level
    assert level_from_edges(0.4, edges) == 3  # a value on an edge goes to the easier level
    assert level_from_edges(-1.0, edges) == 5 and level_from_edges(2.0, edges) == 1


def test_rank_levels_keep_ties_together():
    # Sorted easiest first: 1.0 x2 (mean rank 0.5), 0.75 x2 (2.5), 0.25 x2 (4.5), 0.0 x4 (7.5).
    values = [0.75, 0.25, 1.0, 0.0, 0.0, 0.75, 1.0, 0.25, 0.0, 0.0]
    assert rank_levels(values) == [2, 3, 1, 4, 4, 2, 1, 3, 4, 4]
    assert rank_levels([0.5, 0.4, 0.3, 0.2, 0.1]) == [1, 2, 3, 4, 5]
    assert rank_levels([0.3] * 7) == [3] * 7


def test_oracle_and_predicted_difficulty_from_a_stored_run(tmp_path):
    rows = dev_rows(tmp_path)
    diff = compute_difficulty(rows, num_probe=2, task="scripted", split="dev", source="x")
    by_id = {p.problem_id: p for p in diff.problems}
    # pass@1 from the 4 stored samples: A 3/4, B 1/4, C 1, D 0, E 0.
    assert [(by_id[k + "0"].num_correct, by_id[k + "0"].num_samples) for k in "ABCDE"] == [(3, 4), (1, 4), (4, 4), (0, 4), (0, 4)]
    assert diff.levels("oracle") == {"A0": 2, "A1": 2, "B0": 3, "B1": 3, "C0": 1, "C1": 1, "D0": 4, "D1": 4, "E0": 4, "E1": 4}
    # Predicted: mean reduced score of the first 2 samples; edges are the quintiles of those means.
    assert by_id["A0"].predicted_score == pytest.approx(0.65) and by_id["D0"].predicted_score == pytest.approx(0.1)
    assert diff.predicted_edges == pytest.approx([0.18, 0.26, 0.44, 0.72])
    path = diff.save(tmp_path / "d.json")
    back = Difficulty.load(path)
    assert back == diff
    assert "    2       2       0.750         2       0.750" in back.table()


def test_difficulty_ignores_search_rows_and_pools_seeds():
    def row(pid, strategy, seed, answers, scores=True):
        cands = [{"answer": a, "correct": a == "5", "scores": [0.5] if scores else [], "text": a} for a in answers]
        return {"problem_id": pid, "strategy": strategy, "seed": seed, "level": 2, "candidates": cands, "by_n": {}}

    rows = [
        row("p", "majority", 0, ["5", "3"], scores=False),
        row("p", "weighted", 0, ["5", "3"]),
        row("p", "weighted", 1, ["5", "5"]),
        row("p", "optimal", 0, ["5"] * 8),  # not independent samples: ignored
    ]
    (p,) = compute_difficulty(rows, num_probe=2).problems
    assert (p.num_samples, p.num_correct, p.pass_at_1, p.task_level) == (4, 3, 0.75, 2)
    assert p.predicted_score == pytest.approx(0.5)  # from the scored row of seed 0
    with pytest.raises(DataError, match="no rows of a sampling strategy"):
        compute_difficulty([row("p", "optimal", 0, ["5"])])


def test_difficulty_cli_on_a_stored_run(tmp_path, capsys):
    dev_rows(tmp_path)
    out = tmp_path / "diff.json"
    assert main(["difficulty", "--run", str(tmp_path / "dev"), "--probe-samples", "2", "--samples", "4", "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["num_probe"] == 2 and len(data["problems"]) == 10 and data["split"] == "test"
    assert "predicted-score edges (ascending): 0.1800, 0.2600, 0.4400, 0.7200" in capsys.readouterr().out
    assert main(["difficulty", "--run", str(tmp_path / "dev"), "--probe-samples", "9", "--samples", "4"]) == 2
    assert capsys.readouterr().err.strip() == "error: --probe-samples must be in [1, --samples], got 9."
