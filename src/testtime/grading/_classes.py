"""Equivalence classes of sampled answers, the input to majority voting.

Voting over N samples needs classes, not N^2 symbolic comparisons. Answers are first bucketed by
`answer_key` (string work only); then one representative per bucket (its first answer) is compared with the
representatives of the other buckets by `is_equiv`, and buckets found equal are merged with union-find.
K distinct keys cost at most K(K-1)/2 comparisons, fewer as buckets merge, and pairs of plain numbers never
reach sympy. math-verify is not quite symmetric; the earlier representative plays the gold answer. Merging is transitive, so a chain of near-equal answers can join two answers that are not
equal themselves; math-verify's tolerances make this rare, and it is the usual price of voting over classes.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import check
from ._normalize import answer_key
from ._verify import DEFAULT_TIMEOUT, _check_timeout, is_equiv

__all__ = ["group_answers"]


def group_answers(answers: Sequence[str | None], *, timeout: float = DEFAULT_TIMEOUT) -> list[int | None]:
    """The equivalence class of each answer, for voting.

    Returns one entry per answer, in input order: the index in `answers` of the first answer of its class,
    or None for a None or empty answer. Deterministic: the same answers give the same ids. `timeout`
    bounds each symbolic comparison (a timed-out comparison counts as not equal).
    """
    check(
        isinstance(answers, Sequence) and not isinstance(answers, str),
        f"`answers` must be a sequence of str or None, got {type(answers).__name__}.",
        parameter="answers",
        value=answers,
    )
    _check_timeout(timeout)
    keys: list[str | None] = []
    for i, answer in enumerate(answers):
        check(
            answer is None or isinstance(answer, str),
            f"`answers[{i}]` must be a str or None, got {type(answer).__name__}.",
            parameter="answers",
            value=answer,
        )
        keys.append(None if answer is None else (answer_key(answer) or None))

    first_of_key: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key is not None:
            first_of_key.setdefault(key, i)
    reps = sorted(first_of_key.values())

    parent = {r: r for r in reps}

    def find(r: int) -> int:
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    for n, a in enumerate(reps):
        for b in reps[n + 1 :]:
            root_a, root_b = find(a), find(b)
            # Skipping pairs already joined leaves the transitive closure unchanged.
            if root_a != root_b and is_equiv(answers[a], answers[b], timeout=timeout):
                parent[max(root_a, root_b)] = min(root_a, root_b)  # the class id is its lowest index

    return [None if key is None else find(first_of_key[key]) for key in keys]
