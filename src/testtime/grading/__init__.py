"""Grading model answers: find the final answer, compare it with the gold one, group answers for voting.

    extract_answer(text)        -> "\\frac{1}{2}"     last \\boxed{}, "final answer is", #### N, last number
    is_equiv(gold, pred)        -> True              math-verify, with fast paths, a cache and a hard timeout
    answer_key(answer)          -> "\\frac{1}{2}"     canonical string; equal keys mean equal answers
    group_answers(answers)      -> [0, 0, None, 3]   equivalence classes for majority voting
"""

from ._classes import group_answers
from ._extract import extract_answer
from ._normalize import answer_key
from ._verify import DEFAULT_TIMEOUT, is_equiv

__all__ = ["extract_answer", "is_equiv", "answer_key", "group_answers", "DEFAULT_TIMEOUT"]
