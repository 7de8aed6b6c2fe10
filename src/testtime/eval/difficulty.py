"""Problem difficulty, two ways (Snell et al. 2024, sec. 3.2), from the candidates of a stored eval run.

- **Oracle** (needs the gold answer): pass@1 from all the run's samples with the unbiased estimator of Chen et
  al. 2021 (for k = 1 it is c / n), binned into levels by quantile, level 1 easiest. Problems with equal
  pass@1 share a level (their mean rank decides it), so a tie never splits identical problems.
- **Predicted** (no gold answer): the mean reduced scorer score of the first `num_probe` samples, binned with
  quantile edges learned on this (dev) split. `OptimalStrategy` applies the same edges online.

Only rows of independent-sampling strategies (majority, bon, weighted) count: a search's candidates are not
samples of the model's answer distribution.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._errors import DataError, check
from ..scorers import REDUCTIONS, reduce_scores
from ..strategies import STRATEGIES
from ..strategies.optimal import DEFAULT_NUM_PROBE, is_resampling, level_from_edges
from ._metrics import average_ranks, pass_at_k

__all__ = [
    "DEFAULT_NUM_LEVELS",
    "Difficulty",
    "ProblemDifficulty",
    "compute_difficulty",
    "pass_at_k",
    "quantile_edges",
    "rank_levels",
]

DEFAULT_NUM_LEVELS = 5
"""Quintiles, as in Snell et al. 2024 and the reference blog."""


def quantile_edges(values: list[float], num_levels: int = DEFAULT_NUM_LEVELS) -> list[float]:
    """num_levels - 1 ascending cut points: the i/num_levels quantiles of `values` (linear interpolation,
    numpy's default), so `level_from_edges` puts about a num_levels-th of the values on each level."""
    check(len(values) > 0, "difficulty edges need at least one value.", parameter="values")
    xs = sorted(values)
    edges = []
    for i in range(1, num_levels):
        pos = (len(xs) - 1) * i / num_levels
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        edges.append(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))
    return edges


def rank_levels(values: list[float], num_levels: int = DEFAULT_NUM_LEVELS) -> list[int]:
    """Quantile levels of values where higher is easier: level 1 holds the top fifth. Tied values get the
    level of their mean rank, so they always share one."""
    ranks = average_ranks([-v for v in values])
    return [min(num_levels, 1 + int(r * num_levels / len(values))) for r in ranks]


@dataclass
class ProblemDifficulty:
    problem_id: str = ""
    task_level: int | None = None
    """The task's own level (arith, MATH), for comparison."""
    num_samples: int = 0
    num_correct: int = 0
    pass_at_1: float = 0.0
    oracle_level: int = 0
    predicted_score: float | None = None
    """Mean reduced score of the first num_probe samples; None when the run stored no scores."""
    predicted_level: int | None = None


@dataclass
class Difficulty:
    """Per-problem difficulty of one split, and the edges that bin the predicted score."""

    problems: list[ProblemDifficulty] = field(default_factory=list)
    num_levels: int = DEFAULT_NUM_LEVELS
    num_probe: int = DEFAULT_NUM_PROBE
    reduction: str = "last"
    predicted_edges: list[float] = field(default_factory=list)
    task: str = ""
    split: str = ""
    source: str = ""

    def levels(self, bins: str = "oracle") -> dict[str, int]:
        """problem_id -> level, by "oracle" or "predicted" bins."""
        key = "oracle_level" if bins == "oracle" else "predicted_level"
        return {p.problem_id: getattr(p, key) for p in self.problems if getattr(p, key) is not None}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Difficulty:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            data["problems"] = [ProblemDifficulty(**p) for p in data["problems"]]
            return cls(**data)
        except FileNotFoundError:
            raise DataError(f"difficulty file {path} does not exist; write one with `testtime difficulty`.") from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise DataError(f"difficulty file {path} is malformed ({exc}); rerun `testtime difficulty`.") from None

    def table(self) -> str:
        """Problems per level under both binnings, with mean pass@1."""
        lines = [f"{'level':>5} {'oracle':>7} {'mean pass@1':>11} {'predicted':>9} {'mean pass@1':>11}", "-" * 47]
        for lv in range(1, self.num_levels + 1):
            o = [p.pass_at_1 for p in self.problems if p.oracle_level == lv]
            q = [p.pass_at_1 for p in self.problems if p.predicted_level == lv]
            mo = f"{sum(o) / len(o):.3f}" if o else "-"
            mq = f"{sum(q) / len(q):.3f}" if q else "-"
            lines.append(f"{lv:>5} {len(o):>7} {mo:>11} {len(q):>9} {mq:>11}")
        return "\n".join(lines)


def _sample_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """problem_id -> that problem's rows from independent-sampling strategies, one per seed (candidates are
    shared by every sampling strategy of a run, so the first row of a seed stands for all; a row with scores
    is preferred)."""
    per: dict[tuple[str, int], dict] = {}
    for r in rows:
        cls = STRATEGIES.get(r["strategy"])
        if cls is None or not is_resampling(cls) or not r.get("candidates"):
            continue
        key = (r["problem_id"], r.get("seed", 0))
        has_scores = any(c.get("scores") for c in r["candidates"])
        old = per.get(key)
        if old is None or (has_scores and not any(c.get("scores") for c in old["candidates"])):
            per[key] = r
    out: dict[str, list[dict]] = defaultdict(list)
    for (pid, _seed), r in sorted(per.items(), key=lambda kv: (kv[0][1],)):
        out[pid].append(r)
    return out


def compute_difficulty(
    rows: list[dict],
    *,
    num_probe: int = DEFAULT_NUM_PROBE,
    reduction: str = "last",
    num_levels: int = DEFAULT_NUM_LEVELS,
    task: str = "",
    split: str = "",
    source: str = "",
) -> Difficulty:
    """Both difficulties for every problem in `rows` (eval result rows), in first-seen order."""
    check(isinstance(num_probe, int) and num_probe >= 1, f"`num_probe` must be an integer >= 1, got {num_probe!r}.", parameter="num_probe", value=num_probe)
    check(reduction in REDUCTIONS, f"`reduction` must be one of {', '.join(REDUCTIONS)}, got {reduction!r}.", parameter="reduction", value=reduction)
    check(isinstance(num_levels, int) and num_levels >= 2, f"`num_levels` must be an integer >= 2, got {num_levels!r}.", parameter="num_levels", value=num_levels)
    by_problem = _sample_rows(rows)
    if not by_problem:
        raise DataError("no rows of a sampling strategy (majority, bon, weighted) with candidates; difficulty needs samples.")
    out = []
    for pid, prow in by_problem.items():
        cands = [c for r in prow for c in r["candidates"]]
        if any(c.get("correct") is None for c in cands):
            raise DataError(f"problem {pid!r} has no gold answer; oracle difficulty needs one.")
        n, c = len(cands), sum(bool(x["correct"]) for x in cands)
        probe = prow[0]["candidates"][:num_probe]  # the first seed's first samples, as online
        score = None
        if all(x.get("scores") is not None for x in probe) and any(x.get("scores") for x in probe):
            score = sum(reduce_scores(x.get("scores") or [], reduction) for x in probe) / len(probe)
        out.append(ProblemDifficulty(problem_id=pid, task_level=prow[0].get("level"), num_samples=n, num_correct=c, pass_at_1=pass_at_k(n, c, 1)))
        out[-1].predicted_score = score
    for p, lv in zip(out, rank_levels([p.pass_at_1 for p in out], num_levels), strict=True):
        p.oracle_level = lv
    scored = [p.predicted_score for p in out if p.predicted_score is not None]
    edges = quantile_edges(scored, num_levels) if scored else []
    for p in out:
        if p.predicted_score is not None:
            p.predicted_level = level_from_edges(p.predicted_score, edges)
    return Difficulty(problems=out, num_levels=num_levels, num_probe=num_probe, reduction=reduction, predicted_edges=edges, task=task, split=split, source=source)
