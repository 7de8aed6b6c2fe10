"""Grading, part 1: `extract_answer` on boxed answers, "final answer" sentences, GSM8K `####` lines and the
last-number fallback, on hand-written cases and on the GSM8K gold solutions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from testtime._errors import ValidationError
from testtime.grading import extract_answer

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_test.jsonl"


@pytest.mark.parametrize(
    "text, expected",
    [
        # \boxed: nested braces, the last one wins, \fbox, spacing, the short form.
        pytest.param("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", id="nested-braces"),
        pytest.param("\\boxed{\\sqrt{\\frac{a}{b}}}", "\\sqrt{\\frac{a}{b}}", id="deeply-nested"),
        pytest.param("\\boxed{1} is wrong, so \\boxed{2}", "2", id="last-boxed-wins"),
        pytest.param("\\fbox{7}", "7", id="fbox"),
        pytest.param("\\boxed{3} then \\fbox{4}", "4", id="last-of-boxed-and-fbox"),
        pytest.param("\\boxed {x+1}", "x+1", id="space-before-brace"),
        pytest.param("The answer is \\boxed 5", "5", id="short-form"),
        pytest.param("The answer is $\\boxed 5$.", "5", id="short-form-in-math"),
        pytest.param("\\boxed{\\{1,2\\}}", "\\{1,2\\}", id="escaped-braces"),
        pytest.param(
            "\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", id="matrix"
        ),
        pytest.param("\\boxed{ 12 }", "12", id="stripped"),
        pytest.param("\\boxed{5} and then \\boxed{}", "5", id="empty-box-ignored"),
        # A last box never closed is a truncated answer (issue 18): no answer, no earlier box, no fragment.
        pytest.param("\\boxed{5} and then \\boxed{6", None, id="unclosed-last-box-no-earlier-box"),
        pytest.param("so the answer is $\\boxed{\\frac{3", None, id="unclosed-box-truncated"),
        pytest.param("The final answer is $\\boxed{\\frac{3", None, id="unclosed-box-not-the-sentence"),
        pytest.param("#### 7\nso \\boxed{7", None, id="unclosed-box-not-gsm8k"),
        pytest.param("\\boxed{\\frac{1}{2}", None, id="unclosed-inner-braces-closed"),
        pytest.param("\\boxed{5} and then \\boxed", None, id="box-command-at-the-end"),
        pytest.param("\\boxed{ let me redo this: \\boxed{5}", "5", id="closed-box-after-unclosed"),
        pytest.param("\\boxed{\\{1,2\\}", None, id="unclosed-escaped-braces-do-not-close"),
        pytest.param("\\boxed{5} and then \\boxed{} stop", "5", id="empty-last-box-still-skipped"),
        pytest.param("\\boxed{} The final answer is 3.", "3", id="empty-box-falls-through"),
        pytest.param("\\boxed{2}\n#### 7", "2", id="boxed-before-gsm8k"),
        # "final answer is" sentences (the Minerva / lm-evaluation-harness answer format).
        pytest.param("The final answer is $\\boxed{5}$. I hope it is correct.", "5", id="final-boxed"),
        pytest.param("Therefore, the final answer is: 12.", "12", id="final-colon-period"),
        pytest.param("So the final answer is $x=3$.", "x=3", id="final-dollars"),
        pytest.param(
            "Final Answer: The final answer is $28 \\%$. I hope it is correct.", "28 \\%", id="final-minerva-percent"
        ),
        pytest.param("The final answer is 42 I hope it is correct", "42", id="final-hope-no-period"),
        pytest.param("The final answer is 2.5. Next question.", "2.5", id="final-decimal"),
        pytest.param("The final answer is \\(\\frac{1}{2}\\).", "\\frac{1}{2}", id="final-paren-math"),
        pytest.param("The final answer is $\\$18$.", "\\$18", id="final-escaped-dollar"),
        pytest.param("the final answer is 1.\nthe final answer is 2.", "2", id="final-last-wins"),
        # GSM8K.
        pytest.param("She makes $18.\n#### 18", "18", id="gsm8k"),
        pytest.param("#### 1,234", "1234", id="gsm8k-commas"),
        pytest.param("#### -5\n", "-5", id="gsm8k-negative"),
        # Nothing to find.
        pytest.param("no answer here, only 12 and 13", None, id="no-answer"),
        pytest.param("", None, id="empty"),
        pytest.param("\\boxed{}", None, id="only-empty-box"),
        pytest.param("\\boxed{5", None, id="only-unbalanced-box"),
        pytest.param("\\boxedfoo{3}", None, id="not-a-box-command"),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("x is -3", "-3", id="negative"),
        pytest.param("it weighs 2.5 kg", "2.5", id="decimal"),
        pytest.param("about 1,000 apples", "1000", id="thousands"),
        pytest.param("first 4, then 1,234,567.", "1234567", id="millions"),
        pytest.param("the answer is 7.", "7", id="trailing-period"),
        pytest.param("pages 10-12", "12", id="hyphen-not-sign"),
        pytest.param("it is .5", "0.5", id="leading-dot"),
        pytest.param("5 apples, then 6 pears", "6", id="last-wins"),
        pytest.param("no numbers", None, id="none"),
        pytest.param("\\boxed{x} and 5", "x", id="boxed-first"),
        pytest.param("the answer is \\boxed{\\frac{3", None, id="unclosed-box-no-last-number"),
    ],
)
def test_extract_answer_last_number(text, expected):
    assert extract_answer(text, last_number=True) == expected


def test_last_number_is_off_by_default():
    assert extract_answer("x is -3") is None
    assert extract_answer("x is -3", last_number=True) == "-3"


@pytest.mark.parametrize("text", [None, 5, b"\\boxed{1}"], ids=["none", "int", "bytes"])
def test_extract_answer_rejects_non_str(text):
    with pytest.raises(ValidationError, match="`text` must be a str"):
        extract_answer(text)


@pytest.mark.skipif(not GSM8K.is_file(), reason=f"{GSM8K} not present")
def test_gsm8k_golds_extract_as_integers():
    rows = [json.loads(line) for line in GSM8K.read_text().splitlines() if line.strip()]
    expected = [row["answer"].rsplit("####", 1)[1].strip().replace(",", "") for row in rows]
    extracted = [extract_answer(row["answer"]) for row in rows]
    assert len(rows) == 1319
    assert extracted == expected
    assert all(re.fullmatch(r"-?\d+", answer) for answer in extracted)
