"""`is_equiv`: is a predicted answer equal to the gold one?

The decision is math-verify's (huggingface/Math-Verify), which parses LaTeX into sympy and compares numbers,
expressions, sets, intervals, matrices and equations. Two things are ours:

- Fast paths that settle most voting comparisons without sympy: equal `answer_key`s, and two plain numbers.
  Typical integer-answer voting never starts a worker process.
- Numbers with a base subscript (`52_8`), which math-verify reads without the base (`52_8` = `52_9`).
- A hard timeout on any thread, by running math-verify in a worker process (`_worker.py`).

Every verdict is cached: voting asks about the same pairs again and again.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache

from .._errors import check
from ._normalize import answer_key, base_numeral, plain_number, rewrite_notation
from ._worker import run_in_worker

__all__ = ["is_equiv", "DEFAULT_TIMEOUT", "MAX_SYMBOLIC_CHARS", "fast_verdict", "symbolic_equiv"]

DEFAULT_TIMEOUT = 5.0
"""Seconds math-verify may spend on one comparison before it counts as not equal (math-verify's default)."""

# Plain numbers within this relative distance are equal (float noise: "0.30000000000000004" vs "0.3").
_REL_TOL = Fraction(1, 10**9)
# Plain numbers farther apart than this are different. Between the two, math-verify decides with its own
# rounding rules (6 decimals for non-integers, exact for an integer gold), so the fast path never overrules
# it on near-equal numbers.
_REL_FAR = Fraction(1, 10**4)
_CACHE_SIZE = 1 << 16
MAX_SYMBOLIC_CHARS = 1000
"""Longer answers are not sent to math-verify (it needs ~0.5 s per 1000 characters of degenerate output such as
"xxxx..."); they equal only answers with the same key. The longest MATH-500 gold has 53 characters."""


def is_equiv(gold: str, pred: str | None, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether answer `pred` is mathematically equal to answer `gold` (both strings, LaTeX allowed).

    `pred` None or empty is False. Comparisons that math-verify cannot finish within `timeout` seconds are
    False. The check is math-verify's, which is not quite symmetric: give the reference answer as `gold`.
    Safe to call from any thread; results are cached per (gold, pred, timeout).
    """
    check(
        isinstance(gold, str),
        f"`gold` must be a str, got {type(gold).__name__}.",
        parameter="gold",
        value=gold,
    )
    check(
        pred is None or isinstance(pred, str),
        f"`pred` must be a str or None, got {type(pred).__name__}.",
        parameter="pred",
        value=pred,
    )
    _check_timeout(timeout)
    if pred is None:
        return False
    return _is_equiv_cached(gold, pred, float(timeout))


@lru_cache(maxsize=_CACHE_SIZE)
def _is_equiv_cached(gold: str, pred: str, timeout: float) -> bool:
    verdict = fast_verdict(gold, pred)
    if verdict is not None:
        return verdict
    return symbolic_equiv(gold, pred, timeout=timeout)


def fast_verdict(gold: str, pred: str) -> bool | None:
    """True or False when string rules settle the comparison, None when math-verify must decide."""
    gold_key, pred_key = answer_key(gold), answer_key(pred)
    if not gold_key or not pred_key:
        return False
    if gold_key == pred_key:
        return True
    if "%" in gold or "%" in pred:  # math-verify reads "50\%" as both 50 and 0.5; let it decide
        return None
    if len(gold) > MAX_SYMBOLIC_CHARS or len(pred) > MAX_SYMBOLIC_CHARS:
        return False
    verdict = _base_verdict(gold_key, pred_key)
    if verdict is not None:
        return verdict
    a, b = plain_number(gold_key), plain_number(pred_key)
    if a is None or b is None:
        return None
    gap, scale = abs(a - b), max(abs(a), abs(b))
    if gap <= _REL_TOL * scale:
        return True
    if gap > _REL_FAR * scale:
        return False
    return None


def _base_verdict(gold_key: str, pred_key: str) -> bool | None:
    """Compare numbers with a base subscript; None unless one side is one.

    Two numerals are equal when their values are (`52_8` = `101010_2` = `42_{10}`, `52_8` != `52_9`); one
    whose digits its base does not allow (`58_5`) equals only itself. A numeral and a plain integer are equal
    when the digits are (`52_8` = `52`, `52_8` != `42`): every MATH question with such a gold asks for the
    answer in that base, so a bare "52" gives the right digits and the decimal value "42" does not answer
    it (math-verify agrees on both; it ignores subscripts). Other pairs go to math-verify.
    """
    gold_numeral, pred_numeral = base_numeral(gold_key), base_numeral(pred_key)
    if gold_numeral is None and pred_numeral is None:
        return None
    if gold_numeral is not None and pred_numeral is not None:
        gold_value, pred_value = _numeral_value(*gold_numeral), _numeral_value(*pred_numeral)
        return gold_value is not None and gold_value == pred_value
    digits, _ = gold_numeral or pred_numeral
    other = pred_key if gold_numeral is not None else gold_key
    if re.fullmatch(r"\d+", other):
        return digits.lstrip("0") == other.lstrip("0")
    return None


def _numeral_value(digits: str, base: int) -> int | None:
    try:
        return int(digits, base)
    except ValueError:
        return None


def symbolic_equiv(gold: str, pred: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """math-verify's verdict alone (no fast paths, no cache), under a timeout that works on any thread."""
    _check_timeout(timeout)
    return run_in_worker(_for_math_verify(gold), _for_math_verify(pred), float(timeout)) == "true"


def _for_math_verify(answer: str) -> str:
    """The answer as math-verify reads it best: notation rewritten, `$` removed, numbers written plainly.

    math-verify reads "1e-3" as 1*e - 3 and "6.02e23" as 6.02*e*23, so a number goes in as its key.
    """
    key = answer_key(answer)
    if plain_number(key) is not None and "%" not in answer:
        return key
    answer = rewrite_notation(answer).strip()
    m = re.fullmatch(r"\$+(.*?)\$+", answer, flags=re.DOTALL)
    return m.group(1).strip() if m else answer


def _check_timeout(timeout: float) -> None:
    check(
        isinstance(timeout, (int, float))
        and not isinstance(timeout, bool)
        and math.isfinite(timeout)
        and timeout > 0,
        f"`timeout` must be a positive number of seconds, got {timeout!r}.",
        parameter="timeout",
        value=timeout,
    )
