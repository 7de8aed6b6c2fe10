"""Canonical string keys for answers, so voting can bucket equal answers without sympy.

Majority voting compares every answer with every other; most of them differ only in formatting
(`\\dfrac12` vs `\\frac{1}{2}`, `1,000` vs `1000`, `30^\\circ` vs `30`). `answer_key` removes that
formatting with string rewrites in the spirit of hendrycks/math `_strip_string` (modeling/math_equivalence.py)
and Minerva's `normalize_final_answer` (lm-evaluation-harness tasks/minerva_math/utils.py), with one rule
those lack: it must be *conservative*. Two answers with the same key are treated as equivalent without
asking sympy, so a rewrite is allowed only if math-verify agrees the before and after are equal (checked by
`tests/test_grading.py::test_same_key_implies_equivalent`). Equal answers with different keys are fine:
`group_answers` merges those with `is_equiv`.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache

from .._errors import check

__all__ = ["answer_key", "plain_number", "canonical_number"]

_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_WRAPPERS = ("boxed", "fbox", "text", "textbf", "textnormal", "textrm", "mbox", "mathrm")
# Variables allowed on the left of an "x = ..." prefix: one letter (optionally subscripted) or a Greek letter.
_GREEK = (
    "alpha beta gamma delta epsilon varepsilon theta vartheta lambda mu nu xi rho sigma tau phi varphi chi "
    "psi omega"
)
_LHS = rf"(?:[a-zA-Z]|\\(?:{'|'.join(_GREEK.split())}))(?:_\{{?\w+\}}?)?"
_NUM = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[+-]?\.\d+"
# What may follow a number without changing it: units in text mode, degrees, percent, a dollar sign.
# Percent is dropped too: MATH writes "50\%" for the answer 50, and math-verify accepts 50 for it.
_UNIT_TEXT = r"\\(?:text|textnormal|textrm|mbox|mathrm)\{\s*[a-zA-Z][a-zA-Z .]*\}(?:\^\{?[23]\}?)?"
_SUFFIX = rf"(?:{_UNIT_TEXT}|\^\{{?\\circ\}}?|\\circ|\\degree|°|\\%|%)"
_NUMBER_WITH_SUFFIX = re.compile(rf"(?:\\\$)?({_NUM})(?:{_SUFFIX})*")
_SCIENTIFIC = re.compile(
    r"([+-]?(?:\d+\.?\d*|\.\d+))"  # mantissa
    r"(?:[eE]|\\times10\^|\\cdot10\^|\*10\^)\{?([+-]?\d{1,3})\}?"  # 1e5, 1\times10^{5}, 1*10^5
)
_CANONICAL_INT = re.compile(r"-?[1-9]\d{0,399}|0")
_MAX_DIGITS = 400  # canonical numbers longer than this stay as written (10^{10^9} would not fit in memory)


def answer_key(answer: str) -> str:
    """A canonical string for `answer`: answers with equal keys are equivalent.

    Removes formatting that never changes the value: outer `$`/`\\(`/`\\boxed{}`, LaTeX spacing, `\\left`/
    `\\right`, `\\dfrac`/`\\tfrac`, `\\frac12` shorthand, a trailing period, a leading `+`, an `x =` prefix,
    units in `\\text{}` after a number, `^\\circ`, `\\%`, `\\$`, thousands separators, and writes plain
    numbers in one form ("2.50" -> "2.5", "1e3" -> "1000"). Returns "" for an answer with no content.
    """
    check(
        isinstance(answer, str),
        f"`answer` must be a str, got {type(answer).__name__}.",
        parameter="answer",
        value=answer,
    )
    return _key(answer)


@lru_cache(maxsize=1 << 16)  # voting keys the same few strings over and over
def _key(answer: str) -> str:
    if _CANONICAL_INT.fullmatch(answer):  # the common case: 0.4 us here, 23 us through the rewrites below
        return answer
    s = _strip_layout(answer)
    s = re.sub(r"\\[dtc]frac(?![a-zA-Z])", r"\\frac", s)
    # Shorthand arguments: \frac12 -> \frac{1}{2}, \frac1{7} -> \frac{1}{7}, \sqrt3 -> \sqrt{3}, x^{2} -> x^2.
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac(\d)\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\{([^{}]*)\}(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\d)", r"\\sqrt{\1}", s)
    s = re.sub(r"([\^_])\{(\w)\}", r"\1\2", s)
    s = s.replace("{,}", ",")
    s = _strip_prefix(_unwrap(s))
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1]
    s = _unwrap(s)
    m = re.fullmatch(r"\(([A-Za-z])\)", s)  # multiple choice "(C)" -> "C"
    if m:
        s = m.group(1)
    m = _NUMBER_WITH_SUFFIX.fullmatch(s)
    if m:
        s = m.group(1)
    return canonical_number(s) or s


def canonical_number(s: str) -> str | None:
    """`s` as a canonical decimal ("+2.50" -> "2.5", "1,000" -> "1000", "6\\times10^2" -> "600"), or None."""
    s = s.strip()
    if re.fullmatch(_NUM, s):
        number = s.replace(",", "")
    else:
        m = _SCIENTIFIC.fullmatch(s.replace(" ", ""))
        if not m:
            return None
        number = f"{m.group(1)}e{m.group(2)}"
    try:
        value = Decimal(number)
    except InvalidOperation:
        return None
    if value.adjusted() > _MAX_DIGITS or value.adjusted() < -_MAX_DIGITS:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def plain_number(key: str) -> Fraction | None:
    """The exact value of a key that is a plain decimal number ("-2.5"), else None."""
    if re.fullmatch(r"-?\d+(?:\.\d+)?", key) and len(key) <= _MAX_DIGITS:
        return Fraction(key)
    return None


def _strip_layout(s: str) -> str:
    """Remove what only changes how the answer looks: delimiters, spacing commands, sizing, whitespace."""
    s = s.strip()
    for left, right in _DELIMITERS:
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
            break
    s = s.replace("\\displaystyle", " ")
    s = re.sub(r"\\(?:left|right)\.", "", s)  # invisible delimiters
    s = re.sub(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])", "", s)
    # Spacing commands become spaces; `\\` (a matrix row break) is kept, so it is matched first.
    s = re.sub(r"\\\\|\\[ ,;:!]|~", lambda m: m.group(0) if m.group(0) == "\\\\" else " ", s)
    # Drop whitespace unless it separates two word characters ("\pi r", "2 3" stay apart).
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"(?<=\W) | (?=\W)", "", s)
    return s


def _strip_prefix(s: str) -> str:
    """Drop a leading `+` before a number and an `x =` assignment prefix (one variable, one `=`)."""
    if re.match(r"\+[\d.]", s):
        s = s[1:]
    m = re.fullmatch(rf"{_LHS}=([^=]+)", s)
    if m:
        s = m.group(1)
    return s


def _unwrap(s: str) -> str:
    """Remove outer `{...}`, `\\boxed{...}`, `\\text{...}` that enclose the whole answer."""
    while True:
        m = re.match(r"\\(" + "|".join(_WRAPPERS) + r")\{", s)
        start = m.end() if m else (1 if s.startswith("{") else 0)
        if start == 0 or not s.endswith("}") or _matching_brace(s, start - 1) != len(s) - 1:
            return s
        s = s[start:-1].strip()


def _matching_brace(s: str, i: int) -> int:
    """Index of the `}` closing the `{` at `s[i]`, or -1; escaped braces do not count."""
    depth = 0
    j = i
    while j < len(s):
        if s[j] == "\\":
            j += 2
            continue
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return -1
