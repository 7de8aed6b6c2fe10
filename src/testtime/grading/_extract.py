"""Find the final answer in a model's solution text.

Models state answers in a few conventional places, tried in order of how deliberate they are: the last
`\\boxed{...}` (MATH, Qwen and DeepSeek prompts), a Minerva-style "The final answer is ..." sentence, the
GSM8K `#### N` line, and, only when the caller opts in, the last number in the text. The brace matching
follows `last_boxed_only_string` in hendrycks/math (modeling/dataset/util.py) and lm-evaluation-harness
(tasks/minerva_math/utils.py), but skips escaped braces and empty boxes. A last box that is never closed
means the output was cut off while stating its answer: that gives no answer at all, not an earlier box or
the raw fragment (`\\boxed{\\frac{3`), since the answer the model meant is unknown.
"""

from __future__ import annotations

import re

from .._errors import check

__all__ = ["extract_answer"]

# `\boxed` or `\fbox` as a whole control word (not `\boxedfoo`).
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_FINAL_RE = re.compile(r"final answer is\s*:?\s*", re.IGNORECASE)
_HOPE_RE = re.compile(r"\s*\.?\s*I hope it is correct.*$", re.IGNORECASE | re.DOTALL)
# An answer in math mode: $$...$$, $...$, \(...\) or \[...\]; an escaped \$ does not close it.
_MATH_RE = re.compile(r"\$\$((?:\\.|[^\\$])*)\$\$|\$((?:\\.|[^\\$])*)\$|\\\((.*?)\\\)|\\\[(.*?)\\\]")
_GSM8K_RE = re.compile(r"####\s*([^\n]*)")
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|-?\.\d+")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_UNCLOSED = object()  # what `_box_content` returns for a box never closed (any string could be content)


def extract_answer(text: str, *, last_number: bool = False) -> str | None:
    """The final answer stated in `text`, or None when it states none.

    Tried in order: the content of the last non-empty `\\boxed{...}` / `\\fbox{...}` (also `\\boxed {x}`
    and the short form `\\boxed 5`); the answer of the last "final answer is ..." sentence (surrounding `$`
    and "I hope it is correct" removed); the last GSM8K `#### N` line (commas dropped); and, if
    `last_number` is true, the last number in the text ("1,000" -> "1000"). None when that last box is
    never closed (a truncated output: "... so \\boxed{\\frac{3"), whatever comes before it.
    """
    check(
        isinstance(text, str),
        f"`text` must be a str, got {type(text).__name__}.",
        parameter="text",
        value=text,
    )
    boxed = _last_boxed(text)
    if boxed is _UNCLOSED:
        return None
    for answer in (boxed, _final_answer_sentence(text), _gsm8k(text)):
        if answer:
            return answer
    return _last_number(text) if last_number else None


def _last_boxed(text: str) -> str | object | None:
    """The last non-empty box's content; `_UNCLOSED` if that box is never closed; None if there is none."""
    for match in reversed(list(_BOX_RE.finditer(text))):
        content = _box_content(text, match.end())
        if content:
            return content
    return None


def _box_content(text: str, start: int) -> str | object | None:
    """The stripped argument of a box command whose name ends at `start`: None if empty or not TeX,
    `_UNCLOSED` if the text ends before the argument does."""
    i = start
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text):
        return _UNCLOSED
    if text[i] != "{":
        if i == start:  # `\boxed5` is not TeX; `\boxed 5` is (a single-token argument)
            return None
        m = re.match(r"[^\s${}]+", text[i:])
        token = m.group(0).rstrip(".,;:") if m else ""
        return token or None
    depth = 0
    j = i
    while j < len(text):
        ch = text[j]
        if ch == "\\":  # `\{` and `\}` are literal braces; `\\` is a line break
            j += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip() or None
        j += 1
    return _UNCLOSED


def _final_answer_sentence(text: str) -> str | None:
    matches = list(_FINAL_RE.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :].split("\n", 1)[0]
    rest = _HOPE_RE.sub("", rest).strip()
    m = _MATH_RE.match(rest)
    if m:
        return next(g for g in m.groups() if g is not None).strip().rstrip(".").strip() or None
    # Plain text: the answer ends at the first full stop that ends a sentence (so "2.5." gives "2.5").
    rest = re.split(r"\.(?:\s|$)", rest, maxsplit=1)[0]
    return rest.strip().strip("$").strip() or None


def _gsm8k(text: str) -> str | None:
    matches = _GSM8K_RE.findall(text)
    if not matches:
        return None
    answer = _THOUSANDS_RE.sub("", matches[-1].strip()).rstrip(".").strip()
    return answer or None


def _last_number(text: str) -> str | None:
    match = None
    for match in _NUMBER_RE.finditer(text):
        pass
    if match is None:
        return None
    number = match.group(0).replace(",", "")
    # A "-" right after an operand is a hyphen or a subtraction ("pages 10-12", "x-3"), not a sign.
    before = text[match.start() - 1] if match.start() > 0 else " "
    if number.startswith("-") and (before.isalnum() or before in ")]}"):
        number = number[1:]
    if number.startswith((".", "-.")):
        number = number.replace(".", "0.", 1)
    return number
