"""Best-of-N seen analytically (BOND, Sessa et al. 2024, section 3): from one run's m samples of a problem, the
exact expected reward, win rate and accuracy of best-of-N for every N <= m, as if the N candidates were drawn with
replacement from those m samples (the empirical reward distribution), next to what the run measured.

With the rewards sorted r_(1) <= ... <= r_(m), the max of N draws with replacement is r_(i) or below with
probability (i/m)^N, so

    E[max of N] = sum_i r_(i) * ((i/m)^N - ((i-1)/m)^N)

Tied rewards are handled as a group: P(max = v) = F(v)^N - F(v-)^N, F the empirical CDF, and a value read off the
best candidate (its correctness) is the mean over the tied group. The win rate of best-of-N against one base sample
b drawn from the same distribution counts a tie as half a win:

    P(win) = mean_b [1 - (F(b)^N + F(b-)^N) / 2]        (1/2 at N = 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .._errors import DataError
from ._metrics import samples_independently

__all__ = ["BonCurve", "expected_best", "win_rate", "bon_curve", "measured_at"]


def _groups(rewards: Sequence[float]) -> list[tuple[float, float, list[int]]]:
    """(F(v-), F(v), indices with reward v) for each distinct reward v, ascending."""
    m = len(rewards)
    order = sorted(range(m), key=lambda i: rewards[i])
    out, below = [], 0
    i = 0
    while i < m:
        j = i
        while j < m and rewards[order[j]] == rewards[order[i]]:
            j += 1
        out.append((below / m, j / m, order[i:j]))
        below = j
        i = j
    return out


def expected_best(rewards: Sequence[float], n: int, values: Sequence[float] | None = None) -> float:
    """E[value of the best of n draws with replacement]; `values` default to the rewards themselves (E[max])."""
    values = rewards if values is None else values
    return sum((hi**n - lo**n) * sum(values[i] for i in idx) / len(idx) for lo, hi, idx in _groups(rewards))


def win_rate(rewards: Sequence[float], n: int) -> float:
    """P(best of n draws beats one more draw), ties counting 1/2."""
    m = len(rewards)
    return sum(len(idx) * (1 - (hi**n + lo**n) / 2) for lo, hi, idx in _groups(rewards)) / m


def measured_at(rewards: Sequence[float], n: int, correct: Sequence[bool] | None = None) -> tuple[float, float, float | None]:
    """What best-of-n chose in the run: the first n samples' best (lowest index on ties, as `bon` picks), as
    (its reward, its win rate against a base sample drawn from all m, its correctness or None)."""
    best = max(range(n), key=lambda i: (rewards[i], -i))
    r = rewards[best]
    win = sum(1.0 if r > b else 0.5 if r == b else 0.0 for b in rewards) / len(rewards)
    return r, win, (float(correct[best]) if correct is not None else None)


@dataclass
class BonCurve:
    """Per-problem means over a run's rows (one row per problem and seed)."""

    ns: list[int] = field(default_factory=list)
    """1 .. the fewest samples any row has."""
    reward: list[float] = field(default_factory=list)
    """Analytic E[max reward of N] at each of `ns`."""
    win_rate: list[float] = field(default_factory=list)
    accuracy: list[float] | None = None
    """Analytic accuracy of the best-rewarded of N; None without gold answers."""
    measured: dict[int, tuple[float, float, float | None]] = field(default_factory=dict)
    """The run's budget n -> (reward, win rate, accuracy) of what best-of-n chose from the first n samples."""
    strategy: str = ""
    num_rows: int = 0


def _scored_rows(rows: list[dict], strategy: str | None) -> tuple[str, list[dict]]:
    """The rows of one sampling strategy with a reward on every candidate; the first such strategy by default
    (the sampling strategies of one run share their samples, so one of them is all there is)."""
    def usable(r):
        return samples_independently(r["strategy"]) and r["candidates"] and all(c.get("score") is not None for c in r["candidates"])

    names = [strategy] if strategy else list(dict.fromkeys(r["strategy"] for r in rows if usable(r)))
    if not names or not any(r["strategy"] == names[0] and usable(r) for r in rows):
        raise DataError(
            f"no rows of {'strategy ' + repr(strategy) if strategy else 'a sampling strategy'} with a reward on every candidate; "
            "the BoN curve needs independent samples scored by a reward model (eval --strategy bon or weighted)."
        )
    return names[0], [r for r in rows if r["strategy"] == names[0] and usable(r)]


def bon_curve(rows: list[dict], *, strategy: str | None = None) -> BonCurve:
    """The analytic and measured best-of-N curves of a run's rows (see the module docstring)."""
    name, rows = _scored_rows(rows, strategy)
    m = min(len(r["candidates"]) for r in rows)
    has_gold = all(c.get("correct") is not None for r in rows for c in r["candidates"])
    curve = BonCurve(ns=list(range(1, m + 1)), strategy=name, num_rows=len(rows), accuracy=[] if has_gold else None)
    per_row = []
    for r in rows:
        rewards = [c["score"] for c in r["candidates"]]
        correct = [bool(c["correct"]) for c in r["candidates"]] if has_gold else None
        per_row.append((rewards, correct, sorted(int(n) for n in r.get("by_n", {}))))
    mean = lambda xs: sum(xs) / len(xs)
    for n in curve.ns:
        curve.reward.append(mean([expected_best(rw, n) for rw, _, _ in per_row]))
        curve.win_rate.append(mean([win_rate(rw, n) for rw, _, _ in per_row]))
        if has_gold:
            curve.accuracy.append(mean([expected_best(rw, n, [float(c) for c in cor]) for rw, cor, _ in per_row]))
    budgets = sorted({n for _, _, ns in per_row for n in ns if n <= m})
    for n in budgets:
        points = [measured_at(rw, n, cor) for rw, cor, _ in per_row]
        curve.measured[n] = (mean([p[0] for p in points]), mean([p[1] for p in points]), mean([p[2] for p in points]) if has_gold else None)
    return curve
