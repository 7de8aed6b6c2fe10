"""Diverse Verifier Tree Search (search-and-learn's `dvts`; Beeching et al. 2024, "Scaling test-time compute").

n/M independent subtrees per problem. Each step, every live subtree is expanded M ways (one sampled step per
child), the children are scored, and the subtree continues from its best child alone. A subtree ends when its
best child has finished; its finished children of that last expansion are the problem's candidates. Keeping
the subtrees apart keeps the n/M lines of reasoning diverse, where beam search can collapse onto one.

Difference from the reference, on purpose: the final candidates are completed leaves only. The reference
returns all M children of each subtree's last expansion, unfinished siblings included, and votes with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._step_search import SearchState, StepRow, StepSearch, StepSearchParams, check_tree_params

__all__ = ["DVTS", "DVTSParams"]


@dataclass
class DVTSParams(StepSearchParams):
    """Knobs of DVTS (plus the shared ones of `StepSearchParams`)."""

    beam_width: int = 4
    """M: children per subtree per step; there are n/M subtrees. n must be a multiple of it."""
    lookahead: int = 0
    """k >= 0 greedy steps after each sampled step, scored to pick the subtree's best child (the reference
    scores them too); each costs a prefill of every unfinished child. 0 scores the sampled step itself."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_tree_params(self)


class DVTS(StepSearch):
    name = "dvts"
    params_class = DVTSParams

    def initial_tags(self, n: int) -> list[int]:
        m = self.params.beam_width
        return [j // m for j in range(n)]  # subtree of each of the n first children

    def update(self, state: SearchState, rows: list[StepRow], final: bool) -> list[int]:
        m = self.params.beam_width
        subtrees: dict[int, list[int]] = {}
        for i, r in enumerate(rows):
            subtrees.setdefault(r.tag, []).append(i)
        keep: list[int] = []
        for children in subtrees.values():
            best = min(children, key=lambda i: (-rows[i].score, i))  # ties: lowest row
            if final or rows[best].finished:
                # The subtree ends: its finished children are completed leaves; unfinished siblings are dropped.
                for i in children:
                    if rows[i].finished:
                        state.complete(rows[i])
            else:
                keep += [best] * m
        return keep
