"""AUC and the "score at p% of the steps" read-out shared by training (model selection) and the report."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..eval._metrics import average_ranks

__all__ = ["auc", "prefix_index", "FRACTIONS"]

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve: P(score of a random positive > score of a random negative), ties count 1/2
    (the Mann-Whitney U statistic over average ranks). None when one class is empty."""
    pos = sum(1 for y in labels if y)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    ranks = [r + 1 for r in average_ranks(scores)]  # 1-based; a tie group shares its mean rank
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def prefix_index(num_steps: int, fraction: float) -> int:
    """0-based index of the last step of the prefix holding `fraction` of a solution's steps (at least one):
    ceil(fraction * S) steps, so 25% of a 2-step solution is its first step."""
    return max(1, math.ceil(fraction * num_steps - 1e-9)) - 1
