"""Tasks: the generated `arith` set (determinism, disjoint splits, correct answers, difficulty by level),
the data set loaders on the shared copies of MATH-500 and GSM8K, `jsonl` field mapping, and error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import testtime.tasks
from testtime._errors import DataError, UnknownNameError, ValidationError
from testtime.tasks import (
    ARITH_FEW_SHOT,
    ARITH_LEVELS,
    ARITH_SYSTEM_PROMPT,
    GSM8K_SYSTEM_PROMPT,
    MATH_SYSTEM_PROMPT,
    TASKS,
    ArithTask,
    Gsm8kTask,
    JsonlTask,
    Math500Task,
    Problem,
    load_task,
)
from testtime.tasks.arith import MAX_SHOTS, apply_op, few_shot_examples, split_of
from testtime.tasks.gsm8k import parse_gold

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MATH500 = SHARED_DATA / "math500.jsonl"
GSM8K = SHARED_DATA / "gsm8k_test.jsonl"
needs_math500 = pytest.mark.skipif(not MATH500.is_file(), reason=f"{MATH500} not present")
needs_gsm8k = pytest.mark.skipif(not GSM8K.is_file(), reason=f"{GSM8K} not present")


@pytest.fixture(scope="module")
def arith_splits() -> dict[str, list[Problem]]:
    return {split: load_task("arith", split=split) for split in ("train", "dev", "test")}


# --- arith -------------------------------------------------------------------------------------------------


def test_registry_names_and_classes():
    from testtime.tasks.alpaca_farm import AlpacaFarmTask
    from testtime.tasks.instructions import InstructionsTask

    assert TASKS == {"arith": ArithTask, "math500": Math500Task, "gsm8k": Gsm8kTask, "jsonl": JsonlTask, "instructions": InstructionsTask, "alpaca_farm": AlpacaFarmTask}
    assert set(testtime.tasks.__all__) >= {"Problem", "TASKS", "load_task", "MATH_SYSTEM_PROMPT", "ArithTask"}


def test_arith_same_seed_same_problems():
    a = load_task("arith", split="dev", limit=25, seed=3)
    b = load_task("arith", split="dev", limit=25, seed=3)
    assert [(p.id, p.question, p.answer, p.messages, p.meta) for p in a] == [
        (p.id, p.question, p.answer, p.messages, p.meta) for p in b
    ]


def test_arith_different_seed_different_problems():
    a = {p.question for p in load_task("arith", split="dev", limit=50, seed=0)}
    b = {p.question for p in load_task("arith", split="dev", limit=50, seed=1)}
    assert len(a) == len(b) == 50
    assert len(a & b) == 0


def test_arith_default_size_ids_and_interleaving(arith_splits):
    test = arith_splits["test"]
    assert len(test) == 500
    assert Counter(p.level for p in test) == {1: 100, 2: 100, 3: 100, 4: 100, 5: 100}
    assert [p.id for p in test[:6]] == [
        "arith-test-L1-0000",
        "arith-test-L2-0000",
        "arith-test-L3-0000",
        "arith-test-L4-0000",
        "arith-test-L5-0000",
        "arith-test-L1-0001",
    ]
    assert test[-1].id == "arith-test-L5-0099"
    assert all(p.last_number_fallback for p in test)


def test_arith_limit_is_a_prefix_of_a_larger_run():
    small = load_task("arith", split="train", limit=7)
    large = load_task("arith", split="train", limit=40)
    assert [p.id for p in small] == [p.id for p in large[:7]]
    assert [p.question for p in small] == [p.question for p in large[:7]]
    assert Counter(p.level for p in large) == {1: 8, 2: 8, 3: 8, 4: 8, 5: 8}


def test_arith_levels_filter():
    problems = load_task("arith", split="dev", levels=[4, 2], limit=10)
    assert [p.id for p in problems[:4]] == [
        "arith-dev-L2-0000",
        "arith-dev-L4-0000",
        "arith-dev-L2-0001",
        "arith-dev-L4-0001",
    ]
    assert Counter(p.level for p in problems) == {2: 5, 4: 5}


def test_arith_splits_are_disjoint(arith_splits):
    questions = {split: [p.question for p in ps] for split, ps in arith_splits.items()}
    for split, qs in questions.items():
        assert len(set(qs)) == len(qs) == 500, split  # no repeats inside a split either
        assert {split_of(q) for q in qs} == {split}
    assert not set(questions["train"]) & set(questions["dev"])
    assert not set(questions["train"]) & set(questions["test"])
    assert not set(questions["dev"]) & set(questions["test"])


def test_arith_few_shot_examples_are_in_no_split(arith_splits):
    few_shot = {q for level in ARITH_LEVELS for q, _ in few_shot_examples(level, MAX_SHOTS)}
    assert len(few_shot) == len(ARITH_LEVELS) * MAX_SHOTS
    assert {split_of(q) for q in few_shot} == {"train"}  # so never a dev or test question...
    for problems in arith_splits.values():
        assert not few_shot & {p.question for p in problems}  # ...and reserved out of train too
    assert few_shot_examples(3, 2) == few_shot_examples(3, MAX_SHOTS)[:2]
    # The level-free set (for `testtime solve`) is one example each from levels 1-4, one to four steps.
    assert ARITH_FEW_SHOT == tuple(few_shot_examples(level, 1)[0] for level in (1, 2, 3, 4))
    assert [solution.count("\n\n") for _, solution in ARITH_FEW_SHOT] == [1, 1, 2, 2]


def test_arith_answers_recompute_from_the_operation_chain(arith_splits):
    for problems in arith_splits.values():
        for p in problems:
            value = p.meta["start"]
            for op, k in p.meta["ops"]:
                if op == "/":
                    assert value % k == 0, p.id  # divisions are exact
                value = apply_op(value, op, k)
                assert 1 <= value <= ARITH_LEVELS[p.level].max_value, p.id
            assert p.answer == str(value) == str(p.meta["answer"]), p.id


def test_arith_numbers_appear_in_the_question(arith_splits):
    for p in arith_splits["dev"][:100]:
        assert str(p.meta["start"]) in p.question, p.id
        for _, k in p.meta["ops"]:
            assert str(k) in p.question, p.id


def test_arith_difficulty_grows_with_level(arith_splits):
    by_level = {lv: [p for p in arith_splits["test"] if p.level == lv] for lv in range(1, 6)}

    def mean(values):
        values = list(values)
        return sum(values) / len(values)

    num_ops = [mean(len(p.meta["ops"]) for p in ps) for ps in by_level.values()]
    # The calibrated model adds well and does anything else badly, so a step that is not "+" counts twice.
    hardness = [
        mean(sum(1 if op == "+" else 2 for op, _ in p.meta["ops"]) for p in ps) for ps in by_level.values()
    ]
    assert num_ops == sorted(num_ops) and num_ops[0] == 1.0 and num_ops[-1] >= 4
    assert hardness == sorted(hardness) and len(set(hardness)) == 5
    assert {op for p in by_level[1] for op, _ in p.meta["ops"]} == {"+"}
    assert max(mean(int(p.answer) for p in ps) for ps in by_level.values()) == mean(
        int(p.answer) for p in by_level[5]
    )
    for p in by_level[5]:
        ops = [op for op, _ in p.meta["ops"]]
        assert "*" in ops and "/" in ops, p.id


def test_arith_messages_shape():
    problems = load_task("arith", split="test", limit=5)
    for p in problems:
        shots = few_shot_examples(p.level, 4)
        assert [m["role"] for m in p.messages] == ["system", *["user", "assistant"] * 4, "user"]
        assert p.messages[0]["content"] == ARITH_SYSTEM_PROMPT
        assert [m["content"] for m in p.messages[1:9]] == [text for shot in shots for text in shot]
        assert p.messages[-1] == {"role": "user", "content": p.question}


def test_arith_worked_solution_follows_the_chain(arith_splits):
    for p in arith_splits["dev"]:
        steps = p.meta["solution"].split("\n\n")
        assert len(steps) == len(p.meta["ops"]) + 1, p.id
        value = p.meta["start"]
        for line, (op, k) in zip(steps[:-1], p.meta["ops"], strict=True):
            new = apply_op(value, op, k)
            assert line.endswith(f": {value} {op} {k} = {new}."), (p.id, line)
            value = new
        assert steps[-1] == f"Therefore, the final answer is: $\\boxed{{{p.answer}}}$."
    first = load_task("arith", split="dev", limit=1)[0]
    assert first.question == (
        "Aisha collected 12 apples last year. She finds 9 more apples. How many apples does Aisha have at the end?"
    )
    assert first.meta["solution"] == (
        "She finds 9 more apples, so we add: 12 + 9 = 21.\n\nTherefore, the final answer is: $\\boxed{21}$."
    )


def test_arith_num_shots_and_system_prompt_override():
    (p,) = load_task("arith", split="dev", limit=1, num_shots=0, system_prompt="Be brief.")
    assert p.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": p.question}]
    (p,) = load_task("arith", split="dev", limit=1, num_shots=1, system_prompt="")
    assert [m["role"] for m in p.messages] == ["user", "assistant", "user"]
    (p,) = load_task("arith", split="dev", limit=1, num_shots=8)
    assert len(p.messages) == 1 + 2 * 8 + 1


# --- data set tasks ----------------------------------------------------------------------------------------


def test_math_system_prompt_is_search_and_learn():
    assert MATH_SYSTEM_PROMPT.startswith("Solve the following math problem efficiently and clearly:\n\n")
    assert (
        "## Step 1: [Concise description]\n[Brief explanation and calculations]\n\n## Step 2:"
        in MATH_SYSTEM_PROMPT
    )
    assert (
        "Therefore, the final answer is: $\\boxed{answer}$. I hope it is correct.\n\n" in MATH_SYSTEM_PROMPT
    )
    assert MATH_SYSTEM_PROMPT.endswith(
        "Where [answer] is just the final number or expression that solves the problem."
    )
    assert GSM8K_SYSTEM_PROMPT.endswith("Where [answer] is just the final number that solves the problem.")


@needs_math500
def test_math500_from_local_file():
    problems = load_task("math500", data=MATH500)
    assert len(problems) == 500
    assert len({p.id for p in problems}) == 500
    assert all(p.answer for p in problems) and all(p.level in range(1, 6) for p in problems)
    first = problems[0]
    assert first.id == "math500-test/precalculus/807"
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.level == 2 and first.meta["subject"] == "Precalculus"
    assert first.last_number_fallback is False
    assert first.messages == [
        {"role": "system", "content": MATH_SYSTEM_PROMPT},
        {"role": "user", "content": first.question},
    ]


@needs_math500
def test_math500_levels_and_limit():
    rows = [json.loads(line) for line in MATH500.read_text().splitlines() if line.strip()]
    level_1 = load_task("math500", data=MATH500, levels=[1])
    assert len(level_1) == sum(r["level"] == 1 for r in rows)
    assert {p.level for p in level_1} == {1}
    assert [p.question for p in load_task("math500", data=MATH500, limit=3)] == [
        r["problem"] for r in rows[:3]
    ]


@needs_gsm8k
def test_gsm8k_from_local_file():
    problems = load_task("gsm8k", data=GSM8K)
    assert len(problems) == 1319
    assert all(p.answer and "," not in p.answer and p.level is None for p in problems)
    assert problems[0].id == "gsm8k-test-0000" and problems[0].answer == "18"
    assert problems[0].last_number_fallback is True
    assert problems[0].messages[0] == {"role": "system", "content": GSM8K_SYSTEM_PROMPT}
    with_comma = [p for p in problems if "," in p.meta["solution"].rsplit("####", 1)[1]]
    assert with_comma and all(p.answer.isdigit() for p in with_comma)


@pytest.mark.parametrize(
    ("solution", "gold"),
    [
        pytest.param("She sells 9 eggs.\n#### 18", "18", id="plain"),
        pytest.param("Total is 1234.\n#### 1,234", "1234", id="comma"),
        pytest.param("#### 1,000,000", "1000000", id="two-commas"),
        pytest.param("It drops by 5.\n####  -5 ", "-5", id="negative-spaces"),
        pytest.param("Half: 2.5\n#### 2.5", "2.5", id="decimal"),
    ],
)
def test_gsm8k_gold_parsing(solution, gold):
    assert parse_gold(solution) == gold


@needs_gsm8k
def test_gsm8k_from_hub_rows(monkeypatch):
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[:4]]
    calls = []

    def fake_load_dataset(path, name=None, *, split):
        calls.append((path, name, split))
        return rows

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    problems = load_task("gsm8k", split="train", limit=3)
    assert calls == [("openai/gsm8k", "main", "train")]
    assert [p.id for p in problems] == ["gsm8k-train-0000", "gsm8k-train-0001", "gsm8k-train-0002"]
    assert [p.answer for p in problems] == [parse_gold(r["answer"]) for r in rows[:3]]


@pytest.mark.parametrize(
    ("task", "hint"),
    [
        pytest.param("math500", "--data PATH/math500.jsonl", id="math500"),
        pytest.param("gsm8k", "--data PATH/gsm8k_test.jsonl", id="gsm8k"),
    ],
)
def test_offline_without_path_says_how_to_pass_one(monkeypatch, task, hint):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def offline(*args, **kwargs):  # what datasets raises offline (OfflineModeIsEnabled is a ConnectionError)
        raise ConnectionError("Couldn't reach 'x' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=f"cannot download .*OfflineModeIsEnabled.*{hint}") as info:
        load_task(task)
    assert "\n" not in str(info.value)


def test_offline_env_with_real_datasets(tmp_path):
    # datasets reads the offline switches at import, so the real path is checked in a fresh interpreter.
    pytest.importorskip("datasets")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(testtime.tasks.__file__).parents[2]), env.get("PYTHONPATH", "")]
    )
    code = (
        "from testtime.tasks import load_task\nfrom testtime._errors import DataError\n"
        "try:\n    load_task('math500')\nexcept DataError as e:\n    print('DataError:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("DataError: cannot download HuggingFaceH4/MATH-500"), out.stderr[-2000:]
    assert "--data PATH/math500.jsonl" in out.stdout


# --- jsonl -------------------------------------------------------------------------------------------------


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_jsonl_field_mapping(tmp_path):
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            json.dumps({"q": "What is 2+2?", "a": 4, "uid": "x1", "lvl": 1}),
            "",
            "   ",
            json.dumps({"q": "What is 3*3?", "a": "9", "uid": "x2", "lvl": "Level 3"}),
        ],
    )
    problems = load_task(
        "jsonl",
        data=path,
        problem_field="q",
        answer_field="a",
        id_field="uid",
        level_field="lvl",
        last_number_fallback=True,
        system_prompt="S",
    )
    assert [(p.id, p.question, p.answer, p.level, p.meta) for p in problems] == [
        ("x1", "What is 2+2?", "4", 1, {"line": 1}),
        ("x2", "What is 3*3?", "9", 3, {"line": 4}),
    ]
    assert all(p.last_number_fallback for p in problems)
    assert problems[1].messages == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "What is 3*3?"},
    ]
    assert [
        p.id
        for p in load_task(
            "jsonl", data=path, problem_field="q", answer_field="a", level_field="lvl", levels=[3]
        )
    ] == ["mine-test-4"]


def test_jsonl_defaults_and_no_answers(tmp_path):
    path = write_jsonl(tmp_path / "plain.jsonl", [json.dumps({"problem": f"p{i}"}) for i in range(5)])
    problems = load_task("jsonl", data=path, answer_field=None, limit=2, split="dev")
    assert [(p.id, p.question, p.answer, p.level) for p in problems] == [
        ("plain-dev-1", "p0", None, None),
        ("plain-dev-2", "p1", None, None),
    ]
    assert problems[0].messages[0] == {"role": "system", "content": MATH_SYSTEM_PROMPT}
    assert problems[0].last_number_fallback is False


GOOD = json.dumps({"problem": "1+1?", "answer": "2"})


@pytest.mark.parametrize(
    ("lines", "kwargs", "match"),
    [
        pytest.param(None, {}, r"data file '.*nothere\.jsonl' does not exist", id="missing-file"),
        pytest.param(
            [GOOD, GOOD, '{"problem": "3?", '],
            {},
            r"data\.jsonl line 3: not valid JSON",
            id="bad-json-line-3",
        ),
        pytest.param(
            [GOOD, "", "[1, 2]"],
            {},
            r"data\.jsonl line 3: expected a JSON object, got list",
            id="not-an-object",
        ),
        pytest.param(
            [GOOD, json.dumps({"question": "x", "answer": "1"})],
            {},
            r"data\.jsonl line 2: missing field 'problem' \(the line has: answer, question\)",
            id="missing-field",
        ),
        pytest.param(
            [GOOD],
            {"answer_field": "gold"},
            r"line 1: missing field 'gold' \(the line has: answer, problem\)",
            id="missing-mapped-field",
        ),
        pytest.param(
            [json.dumps({"problem": "x", "answer": "1", "level": "hard"})],
            {"level_field": "level"},
            r"line 1: field 'level' must be a level 1\.\.5, got 'hard'",
            id="bad-level",
        ),
    ],
)
def test_jsonl_bad_input(tmp_path, lines, kwargs, match):
    path = tmp_path / "nothere.jsonl" if lines is None else write_jsonl(tmp_path / "data.jsonl", lines)
    with pytest.raises(DataError, match=match):
        load_task("jsonl", data=path, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "match"),
    [
        pytest.param(
            "aritm",
            {},
            UnknownNameError,
            r"unknown task 'aritm'; choose one of: alpaca_farm, arith, gsm8k, instructions, jsonl, math500",
            id="unknown-task",
        ),
        pytest.param(
            "arith",
            {"split": "validation"},
            ValidationError,
            r"no split 'validation'; choose one of: train, dev, test",
            id="bad-split",
        ),
        pytest.param(
            "math500",
            {"split": "train"},
            ValidationError,
            r"task 'math500' has no split 'train'",
            id="math500-train",
        ),
        pytest.param(
            "arith",
            {"limit": 0},
            ValidationError,
            r"`limit` must be a positive integer or None, got 0",
            id="limit-0",
        ),
        pytest.param(
            "arith",
            {"levels": [0, 6]},
            ValidationError,
            r"`levels` must be a non-empty list of levels 1\.\.5",
            id="bad-levels",
        ),
        pytest.param(
            "arith", {"levels": []}, ValidationError, r"`levels` must be a non-empty list", id="empty-levels"
        ),
        pytest.param(
            "arith",
            {"data": "x.jsonl"},
            ValidationError,
            r"task 'arith' is generated and reads no data file",
            id="arith-data",
        ),
        pytest.param(
            "arith",
            {"num_shots": 9},
            ValidationError,
            r"`num_shots` must be in \[0, 8\], got 9",
            id="num-shots",
        ),
        pytest.param(
            "arith",
            {"problem_field": "q"},
            ValidationError,
            r"task 'arith' has no option `problem_field`; its options are: num_shots",
            id="unknown-option",
        ),
        pytest.param("jsonl", {}, ValidationError, r"task 'jsonl' needs `data`", id="jsonl-no-data"),
        pytest.param(
            "jsonl",
            {"data": "x.jsonl", "levels": [1]},
            ValidationError,
            r"needs `level_field`",
            id="jsonl-levels",
        ),
        pytest.param(
            "gsm8k",
            {"levels": [1]},
            ValidationError,
            r"task 'gsm8k' has no difficulty levels",
            id="gsm8k-levels",
        ),
    ],
)
def test_load_task_bad_arguments(name, kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        load_task(name, **kwargs)
    if error is ValidationError:
        assert info.value.parameter in {"split", "limit", "levels", "data", "num_shots", "problem_field"}


def test_gsm8k_missing_final_answer(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [json.dumps({"question": "q", "answer": "no marker"})])
    with pytest.raises(DataError, match=r"g\.jsonl line 1: field 'answer' has no '#### N' final answer"):
        load_task("gsm8k", data=path)
