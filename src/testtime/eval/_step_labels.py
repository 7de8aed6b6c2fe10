"""Step labels for PRM training from a problem's own candidates, without new rollouts.

Math-Shepherd's hard estimate (Wang et al. 2024, section 3.3) labels a step prefix good when some completion from
it reaches the gold answer. Here the completions are the candidates the run already has: a prefix of steps is
good when a correct candidate of the same problem starts with the same steps. A correct candidate is good at
every step; a wrong one is good up to where it leaves the last correct candidate it agreed with, and bad from
there on (once no correct candidate shares a prefix, none shares a longer one). Beam search and DVTS, whose
candidates share prefixes by construction, give the most informative labels; independent samples mostly part
at step one. Steps are compared with surrounding whitespace stripped.
"""

from __future__ import annotations

from .._errors import DataError
from ..scorers import split_steps
from ._export_pool import ProblemPool

__all__ = ["correct_prefixes", "step_labels"]


def _key(steps: list[str]) -> tuple[str, ...]:
    return tuple(s.strip() for s in steps)


def correct_prefixes(pool: ProblemPool) -> set[tuple[str, ...]]:
    """Every step prefix of every correct candidate of the problem."""
    if pool.problem.answer is None:
        raise DataError(f"--format prm labels steps by the gold answer, but problem {pool.problem.id!r} has none.")
    out: set[tuple[str, ...]] = set()
    for c in pool.candidates:
        if c.correct:
            steps = _key(split_steps(c.text))
            out.update(steps[: j + 1] for j in range(len(steps)))
    return out


def step_labels(steps: list[str], good: set[tuple[str, ...]]) -> list[bool]:
    """Label of each step: whether the prefix ending at it is a prefix of a correct candidate."""
    key = _key(steps)
    return [key[: j + 1] in good for j in range(len(key))]
