"""AUC and the "score at p% of the steps" read-out shared by training (model selection) and the report."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..eval._metrics import auc  # noqa: F401  (re-exported: the PRM report and training read it here)

__all__ = ["auc", "prefix_index", "FRACTIONS"]

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def prefix_index(num_steps: int, fraction: float) -> int:
    """0-based index of the last step of the prefix holding `fraction` of a solution's steps (at least one):
    ceil(fraction * S) steps, so 25% of a 2-step solution is its first step."""
    return max(1, math.ceil(fraction * num_steps - 1e-9)) - 1
