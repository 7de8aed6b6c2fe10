"""One line of an eval's `results.jsonl`, typed: `EvalRow`, and the `Outcome` of its strategy at each budget.

`EvalRow.to_dict` writes, and `EvalRow.from_dict` reads, exactly the JSON object every run has stored (the same
keys in the same order, optional keys only when set), so runs written before these classes existed resume and
are analysed unchanged, and the modules that read rows as plain dicts (`report`, `optimize`, `replay`, ...) keep
reading the files the writer makes with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EvalRow", "Outcome"]


@dataclass
class Outcome:
    """A strategy's choice at one budget n, and what it cost."""

    answer: str | None = None
    """The chosen answer; None when no candidate stated one."""
    selected: int | None = None
    """Index of the chosen candidate; None with no choice."""
    correct: bool = False
    """The chosen answer equals the gold one (`grading.is_equiv`)."""
    passed: bool | None = None
    """Stored as "pass": some candidate the choice was made over is correct (a sampling strategy's first n
    samples, a search's returned candidates); None without a gold answer. The summary's pass@n of a sampling
    strategy is the unbiased estimate over all the row's samples (`_metrics.pass_at_n`), not the mean of this."""
    num_generated_tokens: int = 0
    num_compute_tokens: int = 0
    """Generated + scorer-processed tokens."""
    wall_time: float = 0.0
    """Seconds; for a sampling strategy at n < N, the run's time scaled by its share of tokens."""
    candidates: list[dict] | None = None
    """A budget-dependent strategy's candidates at this budget, for budgets below the row's largest (the row's
    own `candidates` are the largest's); None otherwise."""
    details: dict | None = None
    """What the strategy reported doing (`SolveResult.details`), when it reported anything."""
    choice: dict | None = None
    """`optimal`: the strategy it dispatched to, with its params, level and score."""

    def to_dict(self) -> dict:
        d = {
            "answer": self.answer,
            "selected": self.selected,
            "correct": self.correct,
            "pass": self.passed,
            "num_generated_tokens": self.num_generated_tokens,
            "num_compute_tokens": self.num_compute_tokens,
            "wall_time": self.wall_time,
        }
        for key in ("candidates", "details", "choice"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Outcome:
        return cls(
            answer=d.get("answer"),
            selected=d.get("selected"),
            correct=bool(d.get("correct")),
            passed=d.get("pass"),
            num_generated_tokens=d.get("num_generated_tokens", 0),
            num_compute_tokens=d.get("num_compute_tokens", 0),
            wall_time=d.get("wall_time", 0.0),
            candidates=d.get("candidates"),
            details=d.get("details"),
            choice=d.get("choice"),
        )


@dataclass
class EvalRow:
    """One problem solved by one strategy with one seed, at every budget of the run."""

    problem_id: str = ""
    strategy: str = ""
    """The strategy's name or spec (`deepconf:keep=0.9`), as given to the eval."""
    seed: int = 0
    level: int | None = None
    """The task's difficulty level of the problem, if it has one."""
    gold: str | None = None
    by_n: dict[int, Outcome] = field(default_factory=dict)
    """Budget n -> the outcome at n, budgets ascending (stored with string keys, as JSON needs)."""
    candidates: list[dict] = field(default_factory=list)
    """Every candidate at the largest budget, in index order: text, answer, correct, num_tokens, finish_reason,
    score, scores, and `trace` (per-token logprob, confidence, self-certainty) when sampled with logprobs."""
    usage: dict = field(default_factory=dict)
    """The `strategies.Usage` of the run that made the row (at the largest budget), as a dict."""

    @property
    def key(self) -> tuple[str, str, int]:
        """What makes a row unique in a run (`_results.ROW_KEY`)."""
        return (self.problem_id, self.strategy, self.seed)

    def to_dict(self) -> dict:
        return {
            "problem_id": self.problem_id,
            "strategy": self.strategy,
            "seed": self.seed,
            "level": self.level,
            "gold": self.gold,
            "by_n": {str(n): o.to_dict() for n, o in self.by_n.items()},
            "candidates": self.candidates,
            "usage": self.usage,
        }

    @classmethod
    def from_dict(cls, d: dict) -> EvalRow:
        return cls(
            problem_id=d["problem_id"],
            strategy=d["strategy"],
            seed=d["seed"],
            level=d.get("level"),
            gold=d.get("gold"),
            by_n={int(n): Outcome.from_dict(o) for n, o in d.get("by_n", {}).items()},
            candidates=d.get("candidates", []),
            usage=d.get("usage", {}),
        )
