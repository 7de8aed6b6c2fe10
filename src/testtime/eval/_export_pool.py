"""The candidates of eval runs, grouped by problem, with the prompt each was generated for (`export`'s input).

A run's rows hold candidate texts but not prompts, so the problems are loaded again from the task settings in
the run's `run.json` (the task generator and data files are deterministic: problem i is the same on every load).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .._errors import DataError
from ..tasks import Problem, load_task
from .report import load_run

__all__ = ["PoolCandidate", "ProblemPool", "load_pools"]


@dataclass
class PoolCandidate:
    """One candidate of one row, with where it came from."""

    run: str = ""
    """The run directory it was read from, as given."""
    problem_id: str = ""
    strategy: str = ""
    n: int = 0
    """The row's largest budget: the candidates stored in a row are those of that budget."""
    seed: int = 0
    index: int = 0
    """Position in the row's `candidates`."""
    text: str = ""
    answer: str | None = None
    correct: bool | None = None
    """Graded against the gold answer; None when the task has none."""
    reward: float | None = None
    """The scorer's final score (`score`); None when the strategy ran without a scorer."""
    is_chosen: bool = False
    """The strategy picked it at the row's largest budget."""

    def provenance(self) -> dict:
        return {"run": self.run, "problem_id": self.problem_id, "strategy": self.strategy, "n": self.n, "seed": self.seed, "candidate": self.index}


@dataclass
class ProblemPool:
    """Every candidate read for one problem, in run, row and index order."""

    problem: Problem
    candidates: list[PoolCandidate] = field(default_factory=list)


def _problems_of(run_dir: Path, meta: dict) -> dict[str, Problem]:
    ident = meta.get("identity")
    if not ident or "task" not in ident:
        raise DataError(f"{run_dir / 'run.json'} is missing or names no task, so the prompts of its problems are unknown; export reads runs written by `testtime eval`.")
    problems = load_task(
        ident["task"], split=ident.get("split", "test"), data=ident.get("data"), limit=ident.get("limit"),
        offset=ident.get("offset", 0), levels=ident.get("levels"), **ident.get("task_options", {}),
    )
    return {p.id: p for p in problems}


def _row_candidates(run: str, row: dict) -> list[PoolCandidate]:
    by_n = {int(k): v for k, v in row.get("by_n", {}).items()}
    n = max(by_n, default=len(row["candidates"]))
    selected = by_n[n].get("selected") if by_n else None
    return [
        PoolCandidate(
            run=run, problem_id=row["problem_id"], strategy=row["strategy"], n=n, seed=row["seed"], index=i,
            text=c["text"], answer=c.get("answer"), correct=c.get("correct"), reward=c.get("score"), is_chosen=i == selected,
        )
        for i, c in enumerate(row["candidates"])
    ]


def load_pools(run_dirs: list[str], *, strategies: list[str] | None = None) -> list[ProblemPool]:
    """The candidates of these runs (only rows of `strategies`, when given), one pool per problem, problems in
    first-seen order. Raises `DataError` for a directory that is not a run, a run with no rows, or a problem id
    its task no longer has."""
    pools: dict[str, ProblemPool] = {}
    for run_dir in run_dirs:
        path = Path(run_dir)
        if not path.is_dir():
            raise DataError(f"{run_dir} is not a directory; pass eval run directories (the --out of `testtime eval`).")
        run = load_run(path)
        problems = _problems_of(path, run.meta)
        for row in run.rows:
            if strategies is not None and row["strategy"] not in strategies:
                continue
            pid = row["problem_id"]
            if pid not in problems:
                raise DataError(f"{run_dir}: problem {pid!r} is not in the task its run.json names; was the data file changed?")
            pool = pools.setdefault(pid, ProblemPool(problems[pid]))
            pool.candidates += _row_candidates(run_dir, row)
    if strategies is not None and not pools:
        raise DataError(f"no rows of strategy {', '.join(strategies)} in {', '.join(run_dirs)}.")
    return list(pools.values())
