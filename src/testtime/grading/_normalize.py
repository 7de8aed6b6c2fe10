"""Canonical string keys for answers, so voting can bucket equal answers without sympy.

Majority voting compares every answer with every other; most of them differ only in formatting
(`\\dfrac12` vs `\\frac{1}{2}`, `1,000` vs `1000`, `30^\\circ` vs `30`). `answer_key` removes that
formatting with string rewrites in the spirit of hendrycks/math `_strip_string` (modeling/math_equivalence.py)
and Minerva's `normalize_final_answer` (lm-evaluation-harness tasks/minerva_math/utils.py), with one rule
those lack: it must be *conservative*. Two answers with the same key are treated as equivalent without
asking sympy, so a rewrite is allowed only if math-verify agrees the before and after are equal (checked by
`tests/test_grading.py::test_same_key_implies_equivalent`). Equal answers with different keys are fine:
`group_answers` merges those with `is_equiv`.

`rewrite_notation` runs first, for the key and for math-verify alike: it rewrites notations math-verify
misreads into ones it reads, keeping the value (thin-space thousands, a spaced imaginary unit, repeating
decimals, inequalities for intervals, `\\approx`, a choice label with its text). Each rule says why.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache

from .._errors import check

__all__ = ["answer_key", "plain_number", "canonical_number", "rewrite_notation", "base_numeral"]

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
    s = _strip_layout(rewrite_notation(answer))
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


# Thousands separators other than a plain comma: thin spaces (`10\,080`), `{,}` and MATH's `,\!`. Only
# whole groups of three digits, so "2\,3" or a decimal "1{,}5" is left alone.
_SEPARATOR = r"(?:\\[,;: ]|~|\{,\}|,\\!)"
_GROUPED = re.compile(rf"(?<![\d.])\d{{1,3}}(?:{_SEPARATOR}\d{{3}})+(?!\d|{_SEPARATOR}\d)")
# A number with plain-comma thousands as a whole brace group: `\frac{20,000}{\pi}`. In a brace group the
# comma cannot separate tuple items, and math-verify reads `\frac{20,000}{\pi}` as nothing it can compare.
_BRACED_THOUSANDS = re.compile(r"\{(\d{1,3}(?:,\d{3})+)\}")
# `\mathrm{i}` and `\text{i}`: math-verify drops them ("-2+7\mathrm{i}" reads as 5).
_IMAGINARY_UNIT = re.compile(
    r"\\(?:mathrm|text|textrm|textit|mathit|operatorname)\s*\{\s*i\s*\}|\\imath(?![a-zA-Z])"
)
# A coefficient and `i` apart: "274 i", "2\,i", "2\cdot i". latex2sympy gives the `i` of "274i" other
# assumptions than a lone `i`, so "1+274 i" and "1+274i" parse to unequal sympy expressions. Joining after
# an exponent is safe: TeX's `^` takes one token, so "10^2i" is 10^2 i as "10^2 i" is.
_SPACED_IMAGINARY = re.compile(
    r"(?<![\d.])(\d+(?:\.\d+)?)(?:\s|\\[,;:! ]|~|\\(?:cdot|times)(?![a-zA-Z]))+(?=i(?![a-zA-Z]))"
)
# 1.\overline{3}, 0.1\overline{6}, .\bar{3}: math-verify drops the bar and reads 1.3.
_REPEATING = re.compile(r"(?<![\d.])(\d*)\.(\d*)\\(?:overline|bar)\s*(?:\{\s*(\d{1,50})\s*\}|(\d))")
_CHOICE_WITH_TEXT = re.compile(
    r"\(([A-Z])\)(?P<rest>.+)|\\(?:text|textbf|textrm|textnormal|mathrm|mbox)\{\(([A-Z])\)\}(?P<rest2>.*)"
)
# Inequalities of one variable, read as the interval (or union) they describe.
_RELATION = re.compile(r"\\(?:leqslant|geqslant|leq|geq|le|ge)(?![a-zA-Z])|<|>|≤|≥")
_NOT_EQUAL = re.compile(r"\\neq?(?![a-zA-Z])|≠")
_OR = re.compile(
    r"\\(?:text|textrm|textnormal|mathrm|mbox)\{or\}|\\(?:lor|vee)(?![a-zA-Z])|(?<![a-zA-Z\\])or(?![a-zA-Z])"
)
# An answer without any of these is left to the local rules (saves the layout pass on most answers).
_WHOLE_ANSWER_MARKERS = ("\\approx", "(", "<", ">", "\\le", "\\ge", "\\ne", "≤", "≥", "≠")
_BOUND_COMMANDS = re.compile(r"\\(?:[dtc]?frac|sqrt|pi|infty|cdot|times)(?![a-zA-Z])")


@lru_cache(maxsize=1 << 16)
def rewrite_notation(answer: str) -> str:
    """`answer` with notations math-verify misreads rewritten to ones it reads, the value unchanged.

    Used for the key and for what math-verify is given. `10\\,080` -> `10080`, `1 + 274 i` -> `1 + 274i`,
    `-2+7\\mathrm{i}` -> `-2+7i`, `1.\\overline{3}` -> `\\frac{4}{3}`; and for the whole answer:
    `3 < \\lambda \\le 4` -> `(3,4]`, `x < 2 \\text{ or } x > 3` -> `(-\\infty,2)\\cup(3,\\infty)`,
    `\\approx \\$32,348` -> `\\$32,348`, `\\text{(C) Plane}` -> `\\text{(C)}`. Anything else is unchanged.
    """
    s = _GROUPED.sub(lambda m: re.sub(_SEPARATOR, "", m.group(0)), answer)
    s = _BRACED_THOUSANDS.sub(lambda m: "{" + m.group(1).replace(",", "") + "}", s)
    s = _IMAGINARY_UNIT.sub("i", s)
    s = _SPACED_IMAGINARY.sub(r"\1", s)
    s = _REPEATING.sub(_repeating_as_fraction, s)
    if not any(marker in s for marker in _WHOLE_ANSWER_MARKERS):
        return s  # the common case: none of the whole-answer rules below can apply
    whole = _unwrap(_strip_layout(s))
    if whole.endswith(".") and not whole.endswith(".."):
        whole = whole[:-1]
    rewritten = _without_approx(whole) or _choice_label(whole) or _inequality_as_interval(whole)
    return s if rewritten is None else rewritten


def _repeating_as_fraction(m: re.Match) -> str:
    """`a.b\\overline{c}` as the exact fraction: a.b(ccc...) = (abc - ab) / (10^|b| (10^|c| - 1))."""
    whole, fixed, repeat = m.group(1), m.group(2), m.group(3) or m.group(4)
    if len(whole) + len(fixed) > 50:
        return m.group(0)
    numerator = int(whole + fixed + repeat) - int(whole + fixed or "0")
    value = Fraction(numerator, 10 ** len(fixed) * (10 ** len(repeat) - 1))
    if value.denominator == 1:
        return str(value.numerator)
    return f"\\frac{{{value.numerator}}}{{{value.denominator}}}"


def _without_approx(s: str) -> str | None:
    """`\\approx 5` -> `5`, `x \\approx 5` -> `x=5`: a model's "approximately" states its answer."""
    if s.startswith("\\approx") and s.count("\\approx") == 1:
        return s[len("\\approx") :] or None
    m = re.fullmatch(rf"({_LHS})\\approx([^=]+)", s)
    return f"{m.group(1)}={m.group(2)}" if m and "\\approx" not in m.group(2) else None


def _choice_label(s: str) -> str | None:
    """`\\text{(C) Plane}` -> `\\text{(C)}`: a multiple-choice label followed by its option's text.

    Only one label: "(A), (C)" names two choices and is left alone.
    """
    m = _CHOICE_WITH_TEXT.fullmatch(s)
    if not m:
        return None
    label, rest = (m.group(1), m.group("rest")) if m.group(1) else (m.group(3), m.group("rest2"))
    if re.search(r"\([A-Z]\)", rest):
        return None
    return f"\\text{{({label})}}"


def _inequality_as_interval(s: str) -> str | None:
    """`3<\\lambda\\le4` -> `(3,4]`, `x<2\\text{or}x>3` -> `(-\\infty,2)\\cup(3,\\infty)`, else None.

    Bounds must be numbers (digits, fractions, roots, pi, infinity): `x<y` is a relation, not an interval.
    Strictness decides the bracket: `<` gives `(`, `\\le` gives `[`. Like the `x =` prefix, the variable's
    name is dropped, so "x > 2" and "t > 2" are the same interval.
    """
    variable, intervals = None, []
    for part in _OR.split(s):
        found = _not_equal(part.strip()) or _one_interval(part.strip())
        if found is None or variable not in (None, found[0]):
            return None
        variable = found[0]
        intervals.append(found[1])
    return "\\cup".join(intervals)


def _not_equal(part: str) -> tuple[str, str] | None:
    """(variable, union) for `x \\neq b`: everything but b."""
    m = re.fullmatch(rf"({_LHS})(?:{_NOT_EQUAL.pattern})(.+)", part)
    if not m or not _is_bound(m.group(2)):
        return None
    return m.group(1), f"(-\\infty,{m.group(2)})\\cup({m.group(2)},\\infty)"


def _one_interval(part: str) -> tuple[str, str] | None:
    """(variable, interval) for `x<b`, `b<x`, `a<x\\le b` or `a>x>b`, else None."""
    pieces = [p.strip() for p in _RELATION.split(part)]
    ops = [_direction(op) for op in _RELATION.findall(part)]
    if len(ops) == 1:
        (left, right), (is_less, is_closed) = pieces, ops[0]
        if re.fullmatch(_LHS, left) and _is_bound(right):
            name, bound, is_upper = left, right, is_less  # x < b
        elif re.fullmatch(_LHS, right) and _is_bound(left):
            name, bound, is_upper = right, left, not is_less  # b < x
        else:
            return None
        if is_upper:
            return name, f"(-\\infty,{bound}{']' if is_closed else ')'}"
        return name, f"{'[' if is_closed else '('}{bound},\\infty)"
    if len(ops) == 2 and re.fullmatch(_LHS, pieces[1]) and _is_bound(pieces[0]) and _is_bound(pieces[2]):
        (less1, closed1), (less2, closed2) = ops
        if less1 != less2:  # "1 < x > 3" is no interval
            return None
        if less1:  # a < x < b
            lo, hi, lo_closed, hi_closed = pieces[0], pieces[2], closed1, closed2
        else:  # a > x > b
            lo, hi, lo_closed, hi_closed = pieces[2], pieces[0], closed2, closed1
        return pieces[1], f"{'[' if lo_closed else '('}{lo},{hi}{']' if hi_closed else ')'}"
    return None


def _direction(op: str) -> tuple[bool, bool]:
    """(is "less than", is non-strict) of a relation symbol."""
    is_less = op in ("<", "≤") or op.startswith("\\le")
    return is_less, op in ("≤", "≥") or op.startswith(("\\le", "\\ge"))


def _is_bound(s: str) -> bool:
    """Whether `s` is a number-like interval end: no letters once fractions, roots, pi and infinity go."""
    return bool(s) and not re.search(r"[a-zA-Z\\=<>,]", _BOUND_COMMANDS.sub("", s))


def base_numeral(key: str) -> tuple[str, int] | None:
    """(digits, base) of a key that is a number with a base subscript ("52_8", "4210_{5}", "A3_{16}")."""
    m = re.fullmatch(r"([0-9A-Z]*\d[0-9A-Z]*)_(?:(\d)|\{(\d{1,2})\})", key)
    if not m:
        return None
    base = int(m.group(2) or m.group(3))
    return (m.group(1), base) if 2 <= base <= 36 else None


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
