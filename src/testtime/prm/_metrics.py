"""AUC and the "score at p% of the steps" read-out shared by training (model selection) and the report."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["auc", "prefix_index", "FRACTIONS"]

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties count 1/2
    (the Mann-Whitney U statistic over average ranks). None when one class is empty."""
    pos = sum(1 for y in labels if y)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # average rank of a tie group, 1-based
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def prefix_index(num_steps: int, fraction: float) -> int:
    """0-based index of the last step of the prefix holding `fraction` of a solution's steps (at least one):
    ceil(fraction * S) steps, so 25% of a 2-step solution is its first step."""
    return max(1, math.ceil(fraction * num_steps - 1e-9)) - 1
