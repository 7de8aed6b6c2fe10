"""Grading, part 2: `is_equiv` on public grader test cases, `answer_key` (equal keys must mean equal answers),
`group_answers` for voting, bad input, and a sanity run over the MATH-500 gold answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from grading_cases import ALL

import testtime.grading._classes as classes_module
import testtime.grading._verify as verify_module
from testtime._errors import ValidationError
from testtime.grading import answer_key, extract_answer, group_answers, is_equiv
from testtime.grading._verify import fast_verdict, symbolic_equiv

MATH500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "math500.jsonl"
needs_math500 = pytest.mark.skipif(not MATH500.is_file(), reason=f"{MATH500} not present")

CASES = [pytest.param(gold, pred, expected, id=case_id) for gold, pred, expected, case_id in ALL]
EQUAL_KEY_CASES = [
    pytest.param(gold, pred, id=case_id) for gold, pred, _, case_id in ALL if answer_key(gold) == answer_key(pred)
]


@pytest.mark.parametrize("gold, pred, expected", CASES)
def test_is_equiv_cases(gold, pred, expected):
    assert is_equiv(gold, pred) is expected


@pytest.mark.parametrize("gold, pred", EQUAL_KEY_CASES)
def test_same_key_implies_equivalent(gold, pred):
    # The key is a shortcut past sympy, so it must never join answers math-verify keeps apart.
    assert symbolic_equiv(gold, pred)


def test_enough_cases_share_a_key():
    # Guards the test above against a key that normalizes nothing (it would then test nothing).
    assert len(EQUAL_KEY_CASES) >= 40


@pytest.mark.parametrize(
    "gold, pred", [pytest.param(g, p, id=i) for g, p, expected, i in ALL if not expected]
)
def test_different_answers_have_different_keys(gold, pred):
    assert answer_key(gold) != answer_key(pred)


def test_gold_is_wrapped_in_boxed_before_parsing():
    # Parsed bare, math-verify reads only the "3" of "3\sqrt{13}" (109 of the 500 MATH-500 golds come out
    # empty or truncated that way), which would make a bare "3" correct.
    from math_verify import parse

    assert [str(x) for x in parse("3\\sqrt{13}", parsing_timeout=None)] == ["3", "3"]
    assert not symbolic_equiv("3\\sqrt{13}", "3")
    assert symbolic_equiv("3\\sqrt{13}", "\\sqrt{117}")
    assert is_equiv("3\\sqrt{13}", "\\sqrt{117}")


def test_prefix_stripping_joins_different_variables():
    # A documented trade-off: "x = 5" and "y = 5" share the key "5" (both equal the bare "5" by math-verify),
    # so they count as equal, although math-verify on the raw strings says False.
    from math_verify import parse, verify

    def raw_math_verify(gold, pred):
        return verify(parse(f"${gold}$", parsing_timeout=None), parse(f"${pred}$", parsing_timeout=None), timeout_seconds=None)

    assert answer_key("x = 5") == answer_key("y=5") == "5"
    assert is_equiv("x=5", "y=5")
    assert raw_math_verify("x=5", "5") and raw_math_verify("5", "y=5")
    assert not raw_math_verify("x=5", "y=5")


@pytest.mark.parametrize(
    "gold, pred, verdict",
    [
        pytest.param("12", "12", True, id="same-integer"),
        pytest.param("12", "13", False, id="different-integers"),
        pytest.param("0.3", "0.30000000000000004", True, id="within-1e-9"),
        pytest.param("1000000", "1000001", None, id="near-defers-to-math-verify"),
        pytest.param("0.5", "\\frac{1}{2}", None, id="latex-defers"),
        pytest.param("50\\%", "0.5", None, id="percent-defers"),
        pytest.param("5", "", False, id="empty-pred"),
        pytest.param("", "5", False, id="empty-gold"),
        pytest.param("5", "x" * 1001, False, id="too-long-for-sympy"),
        pytest.param("x" * 1001, "x" * 1001, True, id="too-long-but-same"),
        pytest.param("52_8", "52_9", False, id="base-differs"),
        pytest.param("52_8", "101010_2", True, id="base-same-value"),
        pytest.param("58_5", "58_6", False, id="base-invalid-digits"),
        pytest.param("52_8", "52", True, id="base-vs-bare-digits"),
        pytest.param("52_8", "42", False, id="base-vs-bare-value"),
        pytest.param("52_8", "\\frac{104}{2}", None, id="base-vs-expression-defers"),
    ],
)
def test_fast_verdict(gold, pred, verdict):
    assert fast_verdict(gold, pred) is verdict


def test_integer_answers_never_reach_the_worker(monkeypatch):
    def no_worker(*args):
        raise AssertionError("the worker was called")

    monkeypatch.setattr(verify_module, "run_in_worker", no_worker)
    verify_module._is_equiv_cached.cache_clear()
    assert group_answers(["18", "18.0", "$18$", "20", "1,000", "1000", "-3", None]) == [0, 0, 0, 3, 4, 4, 6, None]
    assert not is_equiv("17", "18")


@pytest.mark.parametrize(
    "answer, key",
    [
        pytest.param("$\\dfrac12$", "\\frac{1}{2}", id="dfrac-shorthand-dollars"),
        pytest.param("\\tfrac{3}{4}", "\\frac{3}{4}", id="tfrac"),
        pytest.param("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", id="left-right-spaces"),
        pytest.param("\\boxed{x = 5}", "5", id="boxed-assignment"),
        pytest.param("\\theta = \\pi", "\\pi", id="greek-assignment"),
        pytest.param("f(x) = 2", "f(x)=2", id="function-not-stripped"),
        pytest.param("x = 1 = y", "x=1=y", id="two-equals-not-stripped"),
        pytest.param("10,\\!000", "10000", id="thin-space-thousands"),
        pytest.param("1,234,567", "1234567", id="thousands"),
        pytest.param("(1,234)", "(1,234)", id="tuple-commas-kept"),
        pytest.param("14{,}916", "14916", id="braced-comma"),
        pytest.param("5\\text{ cm}", "5", id="unit"),
        pytest.param("15\\mbox{ cm}^2", "15", id="squared-unit"),
        pytest.param("30^\\circ", "30", id="degrees"),
        pytest.param("30^{\\circ}", "30", id="degrees-braced"),
        pytest.param("50\\%", "50", id="percent"),
        pytest.param("\\$18.00", "18", id="dollars"),
        pytest.param("+5", "5", id="plus"),
        pytest.param("2.50", "2.5", id="trailing-zero"),
        pytest.param("-0", "0", id="negative-zero"),
        pytest.param("1e-3", "0.001", id="e-notation"),
        pytest.param("6.02\\times 10^{23}", "602000000000000000000000", id="times-ten"),
        pytest.param("\\frac{1}{2}.", "\\frac{1}{2}", id="trailing-period"),
        pytest.param("\\text{(C)}", "C", id="choice"),
        pytest.param("\\text{Monday}", "Monday", id="text"),
        pytest.param("\\pi r", "\\pi r", id="space-between-words-kept"),
        pytest.param("2 3", "2 3", id="space-between-digits-kept"),
        pytest.param("\\sqrt3", "\\sqrt{3}", id="sqrt-shorthand"),
        pytest.param("x^{2}", "x^2", id="single-char-superscript"),
        pytest.param("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", id="matrix"),
        # rewrite_notation (issue 18): notations math-verify misreads, rewritten before the key.
        pytest.param("10\\,080", "10080", id="thin-space-group"),
        pytest.param("\\frac{20{,}000}{\\pi}", "\\frac{20000}{\\pi}", id="braced-comma-in-fraction"),
        pytest.param("2\\,3", "2 3", id="thin-space-not-a-group"),
        pytest.param("1 + 274 i", "1+274i", id="spaced-imaginary"),
        pytest.param("-2+7\\mathrm{i}", "-2+7i", id="mathrm-imaginary"),
        pytest.param("3 if", "3 if", id="word-after-number-kept"),
        pytest.param("1.\\overline{3}", "\\frac{4}{3}", id="repeating-decimal"),
        pytest.param("0.1\\overline{6}", "\\frac{1}{6}", id="repeating-after-fixed-digits"),
        pytest.param("0.\\overline{9}", "1", id="repeating-nines"),
        pytest.param("3 < \\lambda \\le 4", "(3,4]", id="chain-inequality"),
        pytest.param("4 \\ge x > 3", "(3,4]", id="descending-chain"),
        pytest.param("x \\geq 5", "[5,\\infty)", id="ray"),
        pytest.param("5 > x", "(-\\infty,5)", id="flipped-ray"),
        pytest.param("x < 2 \\text{ or } x > 3", "(-\\infty,2)\\cup(3,\\infty)", id="or-union"),
        pytest.param("x \\neq 9", "(-\\infty,9)\\cup(9,\\infty)", id="not-equal"),
        pytest.param("1 < x > 3", "1<x>3", id="mixed-chain-kept"),
        pytest.param("x < y", "x<y", id="two-variables-kept"),
        pytest.param("x < 2 \\text{ or } y > 3", "x<2\\text{or}y>3", id="or-two-variables-kept"),
        pytest.param("\\approx \\$32,348", "32348", id="approx-dollars"),
        pytest.param("x \\approx 5", "5", id="approx-assignment"),
        pytest.param("\\text{(C) Plane}", "C", id="choice-with-text"),
        pytest.param("\\text{(A), (C)}", "(A),(C)", id="two-choices-kept"),
        pytest.param("52_{8}", "52_8", id="base-braced"),
        pytest.param("52_{10}", "52_{10}", id="base-ten-kept"),
        pytest.param("  ", "", id="blank"),
        pytest.param("\\text{}", "", id="empty-text"),
    ],
)
def test_answer_key(answer, key):
    assert answer_key(answer) == key


def test_group_answers_mixed_list():
    answers = ["0.5", "\\frac{1}{2}", None, "1/2", "3", "", "3.0", "\\dfrac12", "x = 3", "\\sqrt{2}", "  "]
    assert group_answers(answers) == [0, 0, None, 0, 4, None, 4, 0, 4, 9, None]


def test_group_answers_merges_transitively():
    # No two of these share a key; every pair is joined through math-verify and union-find.
    assert len({answer_key(a) for a in ["1/2", "0.5", "\\frac{1}{2}"]}) == 3
    assert group_answers(["1/2", "0.5", "\\frac{1}{2}"]) == [0, 0, 0]
    assert group_answers(["7", "\\frac{1}{2}", "0.5", "1/2"]) == [0, 1, 1, 1]


def test_group_answers_ids_are_lowest_index_and_deterministic():
    answers = ["2", "\\sqrt{4}", "1", "2.0", None, "\\frac{2}{2}"]
    first = group_answers(answers)
    assert first == [0, 0, 2, 0, None, 2]
    assert group_answers(answers) == first
    assert group_answers(list(reversed(answers))) == [0, None, 2, 0, 2, 2]


def test_group_answers_compares_only_representatives(monkeypatch):
    calls = []

    def counting_is_equiv(gold, pred, *, timeout):
        calls.append((gold, pred))
        return is_equiv(gold, pred, timeout=timeout)

    monkeypatch.setattr(classes_module, "is_equiv", counting_is_equiv)
    answers = ["1", "2", "3", "4"] * 25 + ["\\frac{2}{2}"]
    groups = group_answers(answers)
    assert groups == [0, 1, 2, 3] * 25 + [0]
    # 5 distinct keys: at most 5 * 4 / 2 = 10 comparisons, here fewer because "\frac{2}{2}" joins "1" first.
    assert len(calls) <= 10
    assert all(gold in {"1", "2", "3", "4"} for gold, _ in calls)


def test_group_answers_keeps_bases_apart(monkeypatch):
    # Issue 18: math-verify ignores base subscripts, so "52_8" and "52_9" used to form one class.
    def no_worker(*args):
        raise AssertionError("the worker was called")

    monkeypatch.setattr(verify_module, "run_in_worker", no_worker)
    verify_module._is_equiv_cached.cache_clear()
    answers = ["52_8", "52_9", "52_{8}", "52_{10}", "101010_2", "204_5", "204_6"]
    assert len({answer_key(a) for a in answers}) == 6
    assert group_answers(answers) == [0, 1, 0, 3, 0, 5, 6]


def test_group_answers_joins_rewritten_notations():
    # Each pair shares its key after `rewrite_notation`, so joining it needs no call to math-verify.
    answers = ["10080", "10\\,080", "(3,4]", "3 < x \\le 4", "\\frac43", "1.\\overline{3}"]
    answers += ["\\text{(C)}", "(C) Plane"]
    assert [answer_key(a) for a in answers[1::2]] == [answer_key(a) for a in answers[::2]]
    assert group_answers(answers) == [0, 0, 2, 2, 4, 4, 6, 6]


def test_group_answers_empty_and_all_none():
    assert group_answers([]) == []
    assert group_answers([None, "", " "]) == [None, None, None]


@pytest.mark.parametrize(
    "call, match",
    [
        pytest.param(lambda: is_equiv(5, "5"), "`gold` must be a str", id="gold-int"),
        pytest.param(lambda: is_equiv("5", 5), "`pred` must be a str or None", id="pred-int"),
        pytest.param(lambda: is_equiv("5", "5", timeout=0), "`timeout` must be a positive number", id="timeout-zero"),
        pytest.param(lambda: is_equiv("5", "5", timeout=float("inf")), "`timeout` must be", id="timeout-inf"),
        pytest.param(lambda: answer_key(None), "`answer` must be a str", id="key-none"),
        pytest.param(lambda: group_answers("123"), "`answers` must be a sequence", id="answers-str"),
        pytest.param(lambda: group_answers(["1", 2]), r"`answers\[1\]` must be a str or None", id="answers-int"),
        pytest.param(lambda: group_answers(["1"], timeout=-1), "`timeout` must be", id="group-timeout"),
    ],
)
def test_bad_input_raises_validation_error(call, match):
    with pytest.raises(ValidationError, match=match):
        call()


WEIRD = ["\\frac{", "}}}{{", "\\", "$", "$$", "\\boxed{", "\\left(", "^^^", "\\begin{pmatrix}", "1/0", "\x00", "\ud800", "x" * 5000]


@pytest.mark.parametrize("text", [pytest.param(t, id=f"weird-{i}") for i, t in enumerate(WEIRD)])
def test_weird_model_output_never_raises(text):
    assert is_equiv("5", text, timeout=2.0) is False
    assert isinstance(answer_key(text), str)
    assert extract_answer(text, last_number=True) in (None, "1", "0")
    assert group_answers([text, "5", text]) in ([0, 1, 0], [None, 1, None])


@needs_math500
def test_math500_golds():
    rows = [json.loads(line) for line in MATH500.read_text().splitlines() if line.strip()]
    golds = [row["answer"] for row in rows]
    assert len(golds) == 500
    assert all(is_equiv(gold, gold) for gold in golds)
    # The same without the fast paths: math-verify itself accepts every gold against itself (500 of 500).
    assert [gold for gold in golds if not symbolic_equiv(gold, gold)] == []
    # Each solution's boxed answer matches its gold: 500 of 500 (the golds were cut from these boxes).
    extracted = [extract_answer(row["solution"]) for row in rows]
    num_correct = sum(is_equiv(gold, answer) for gold, answer in zip(golds, extracted))
    assert num_correct >= 0.95 * len(golds)
    assert num_correct == 500


@needs_math500
def test_math500_neighbouring_golds_differ():
    # Each gold against the next problem's gold: equal only where the values really coincide
    # (3 of 500 pairs: "5" and "x=5", "7" and "7", "3" and "3").
    golds = [json.loads(line)["answer"] for line in MATH500.read_text().splitlines() if line.strip()]
    pairs = list(zip(golds, golds[1:] + golds[:1]))
    matched = [(a, b) for a, b in pairs if is_equiv(a, b)]
    assert matched == [(a, b) for a, b in pairs if answer_key(a) == answer_key(b)]
    assert len(matched) == 3
