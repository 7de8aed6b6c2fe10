"""Accuracy with 95% intervals, pass@N, and compute per budget, from result rows."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["auc", "average_ranks", "mcnemar_p", "wilson_interval", "SummaryRow", "summarize"]


def average_ranks(values: Sequence[float]) -> list[float]:
    """0-based ascending ranks of `values`; tied values share their group's mean rank (what the Mann-Whitney
    AUC and quantile binning of tied scores both need)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2
        i = j + 1
    return ranks


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


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar test of paired outcomes: the binomial probability, at 1/2, of a split of the
    discordant pairs at least as uneven as (only_a, only_b). 1.0 when there is no discordant pair."""
    m = only_a + only_b
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, k) for k in range(min(only_a, only_b) + 1)) / 2**m
    return min(1.0, 2 * tail)


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (well behaved at 0, 1 and small n, unlike the
    normal approximation)."""
    if total == 0:
        return (0.0, 0.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class SummaryRow:
    strategy: str
    n: int
    num_rows: int
    accuracy: float
    ci_low: float
    ci_high: float
    pass_at_n: float | None
    mean_generated_tokens: float
    mean_compute_tokens: float
    mean_wall_time: float


def summarize(rows: list[dict], strategies: list[str]) -> list[SummaryRow]:
    """One line per (strategy, n), strategies in the given order, n ascending."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for row in rows:
        for n, at in row["by_n"].items():
            groups[(row["strategy"], int(n))].append(at)
    out = []
    for strategy in strategies:
        for n in sorted(n for (s, n) in groups if s == strategy):
            ats = groups[(strategy, n)]
            correct = sum(bool(a["correct"]) for a in ats)
            lo, hi = wilson_interval(correct, len(ats))
            passes = [a["pass"] for a in ats if a.get("pass") is not None]
            out.append(
                SummaryRow(
                    strategy=strategy,
                    n=n,
                    num_rows=len(ats),
                    accuracy=correct / len(ats),
                    ci_low=lo,
                    ci_high=hi,
                    pass_at_n=(sum(passes) / len(passes)) if passes else None,
                    mean_generated_tokens=sum(a["num_generated_tokens"] for a in ats) / len(ats),
                    mean_compute_tokens=sum(a["num_compute_tokens"] for a in ats) / len(ats),
                    mean_wall_time=sum(a["wall_time"] for a in ats) / len(ats),
                )
            )
    return out


def format_table(summary: list[SummaryRow]) -> str:
    """A plain-text table for the terminal and the README."""
    header = f"{'strategy':<10} {'n':>4} {'accuracy':>8}  {'95% CI':<14} {'pass@n':>6} {'gen tok':>8} {'gen+scored':>10} {'wall s':>7} {'rows':>5}"
    lines = [header, "-" * len(header)]
    for r in summary:
        pass_n = f"{r.pass_at_n:.3f}" if r.pass_at_n is not None else "-"
        lines.append(
            f"{r.strategy:<10} {r.n:>4} {r.accuracy:>8.3f}  [{r.ci_low:.3f}, {r.ci_high:.3f}] {pass_n:>6} "
            f"{r.mean_generated_tokens:>8.0f} {r.mean_compute_tokens:>10.0f} {r.mean_wall_time:>7.2f} {r.num_rows:>5}"
        )
    return "\n".join(lines)
