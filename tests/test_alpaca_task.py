"""The alpaca_farm task (the Speculative Rejection paper's 100 prompts), from the shared file and from hub
rows, and `offset`, the tuning / test split of one file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testtime import DataError, ValidationError
from testtime.tasks import load_task
from testtime.tasks.alpaca_farm import ALPACA_FARM_100

ALPACA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_farm_100.json"
needs_file = pytest.mark.skipif(not ALPACA.is_file(), reason="../shared/data/alpaca_farm_100.json is not here")


@needs_file
def test_file_gives_the_papers_prompts_in_order():
    rows = json.loads(ALPACA.read_text())
    problems = load_task("alpaca_farm", data=ALPACA)
    assert len(problems) == 100
    assert [p.id for p in problems[:3]] == ["alpaca-059", "alpaca-075", "alpaca-000"]
    assert [p.question for p in problems] == [r["prompt"] for r in rows]
    assert problems[1].chat() == [{"role": "user", "content": "Answer the following question."}]  # no system turn of ours
    assert all(p.answer is None for p in problems)
    # The shipped row numbers are the file's (the hub path selects the same 100, in the same order).
    assert ALPACA_FARM_100 == [(r["JSON_idx"], r["af_eval_idx"]) for r in rows]


@needs_file
def test_offset_and_limit_take_a_slice():
    all_ = load_task("alpaca_farm", data=ALPACA)
    part = load_task("alpaca_farm", data=ALPACA, offset=80, limit=5)
    assert [p.id for p in part] == [p.id for p in all_[80:85]]
    assert [p.id for p in load_task("alpaca_farm", data=ALPACA, offset=98)] == [p.id for p in all_[98:]]
    with pytest.raises(ValidationError, match="`offset` must be an integer >= 0"):
        load_task("alpaca_farm", data=ALPACA, offset=-1)


def test_hub_rows_are_selected_by_the_papers_row_numbers(monkeypatch):
    datasets = pytest.importorskip("datasets")
    rows = [{"instruction": f"instruction {i}", "input": f"input {i}", "output": ""} for i in range(805)]
    calls = []

    def fake_load_dataset(path, name=None, *, split):
        calls.append((path, name, split))
        return rows

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    problems = load_task("alpaca_farm", limit=3)
    assert calls == [("tatsu-lab/alpaca_farm", "alpaca_farm_evaluation", "eval")]
    # (59, 277), (75, 562), (0, 246): 0-based rows of the evaluation set, the instruction alone.
    assert [(p.id, p.question) for p in problems] == [("alpaca-059", "instruction 277"), ("alpaca-075", "instruction 562"), ("alpaca-000", "instruction 246")]


@pytest.mark.parametrize(
    "content, match",
    [
        pytest.param("{not json", "not valid JSON", id="json"),
        pytest.param('{"prompt": "x"}', "expected a JSON list", id="not-a-list"),
        pytest.param('[{"JSON_idx": 1}]', r"item 0: needs an integer `JSON_idx` and a string `prompt` \(it has: JSON_idx\)", id="missing-prompt"),
        pytest.param('[{"JSON_idx": "1", "prompt": "p"}]', "item 0: needs an integer `JSON_idx`", id="string-index"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, content, match):
    path = tmp_path / "a.json"
    path.write_text(content)
    with pytest.raises(DataError, match=match):
        load_task("alpaca_farm", data=path)


def test_missing_file_and_levels():
    with pytest.raises(DataError, match="does not exist"):
        load_task("alpaca_farm", data="/nonexistent.json")
    with pytest.raises(ValidationError, match="no difficulty levels"):
        load_task("alpaca_farm", data="/nonexistent.json", levels=[1])
