"""Accuracy with 95% intervals, pass@n, and compute per budget, from result rows."""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .._errors import UnknownNameError, ValidationError, check
from ..strategies import get_strategy
from ..strategies.optimal import is_resampling
from ._row import EvalRow

__all__ = ["auc", "average_ranks", "mcnemar_p", "pass_at_k", "pass_at_n", "samples_independently", "wilson_interval", "SummaryRow", "summarize", "PASS_AT_N_NOTE"]

PASS_AT_N_NOTE = (
    "pass@n: sampling strategies (majority, bon, weighted, deepconf): P(one of n samples is correct), estimated from "
    "all N samples without bias as 1-C(N-c,n)/C(N,n) (Chen et al. 2021); greedy and the searches (beam, dvts, pf, "
    "spr, adaptive, deepconf-online, optimal): share of problems with a correct answer among the candidates returned "
    "at budget n."
)
"""What the pass@n column means; printed under every summary table."""


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


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021, eq. 1): 1 - C(n-c, k) / C(n, k), the
    probability that k of the n samples, drawn without replacement, include a correct one."""
    check(0 <= c <= n and 1 <= k <= n, f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}.", parameter="k", value=k)
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def samples_independently(strategy: str) -> bool:
    """Whether `strategy` (a name or spec) chooses among independent samples, so that its result at budget n is
    its rule over the first n of one run's N samples (the sampling strategies but greedy). An unknown name (a
    strategy this install lacks, a report's relabelled series) is not."""
    try:
        return is_resampling(get_strategy(strategy))
    except (UnknownNameError, ValidationError):
        return False


def pass_at_n(row: EvalRow, n: int, *, sampled: bool) -> float | None:
    """pass@n of one row (see `PASS_AT_N_NOTE`): for a sampling strategy (`sampled`), `pass_at_k` over all the
    row's N candidates; otherwise, and where the candidates' correctness is unknown, the stored flag (whether
    a candidate the choice at n was made over is correct). None without a gold answer."""
    stored = row.by_n[n].passed
    flags = [c.get("correct") for c in row.candidates]
    if not sampled or stored is None or n > len(flags) or any(f is None for f in flags):
        return None if stored is None else float(stored)
    return pass_at_k(len(flags), sum(bool(f) for f in flags), n)


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
    """Mean pass@n over the rows (`PASS_AT_N_NOTE` says what it is per strategy); None without gold answers."""
    mean_generated_tokens: float
    mean_compute_tokens: float
    mean_wall_time: float


def summarize(rows: Sequence[EvalRow | dict], strategies: list[str], *, sampled: Collection[str] | None = None) -> list[SummaryRow]:
    """One line per (strategy, n), strategies in the given order, n ascending.

    `rows` are `EvalRow`s or the dicts `results.jsonl` holds. `sampled` names the strategies whose rows are
    independent samples (pass@n from all of them, `pass_at_n`); None: each strategy's class says
    (`samples_independently`)."""
    rows = [r if isinstance(r, EvalRow) else EvalRow.from_dict(r) for r in rows]
    if sampled is None:
        sampled = {s for s in strategies if samples_independently(s)}
    groups: dict[tuple[str, int], list[tuple[EvalRow, int]]] = defaultdict(list)
    for row in rows:
        for n in row.by_n:
            groups[(row.strategy, n)].append((row, n))
    out = []
    for strategy in strategies:
        for n in sorted(n for (s, n) in groups if s == strategy):
            ats = [row.by_n[k] for row, k in groups[(strategy, n)]]
            correct = sum(a.correct for a in ats)
            lo, hi = wilson_interval(correct, len(ats))
            passes = [p for row, k in groups[(strategy, n)] if (p := pass_at_n(row, k, sampled=strategy in sampled)) is not None]
            out.append(
                SummaryRow(
                    strategy=strategy,
                    n=n,
                    num_rows=len(ats),
                    accuracy=correct / len(ats),
                    ci_low=lo,
                    ci_high=hi,
                    pass_at_n=(sum(passes) / len(passes)) if passes else None,
                    mean_generated_tokens=sum(a.num_generated_tokens for a in ats) / len(ats),
                    mean_compute_tokens=sum(a.num_compute_tokens for a in ats) / len(ats),
                    mean_wall_time=sum(a.wall_time for a in ats) / len(ats),
                )
            )
    return out


def format_table(summary: list[SummaryRow]) -> str:
    """A plain-text table for the terminal and the README, with what pass@n means under it."""
    header = f"{'strategy':<10} {'n':>4} {'accuracy':>8}  {'95% CI':<14} {'pass@n':>6} {'gen tok':>8} {'gen+scored':>10} {'wall s':>7} {'rows':>5}"
    lines = [header, "-" * len(header)]
    for r in summary:
        pass_n = f"{r.pass_at_n:.3f}" if r.pass_at_n is not None else "-"
        lines.append(
            f"{r.strategy:<10} {r.n:>4} {r.accuracy:>8.3f}  [{r.ci_low:.3f}, {r.ci_high:.3f}] {pass_n:>6} "
            f"{r.mean_generated_tokens:>8.0f} {r.mean_compute_tokens:>10.0f} {r.mean_wall_time:>7.2f} {r.num_rows:>5}"
        )
    if any(r.pass_at_n is not None for r in summary):
        lines += textwrap.wrap(PASS_AT_N_NOTE, width=len(header), break_on_hyphens=False)
    return "\n".join(lines)
