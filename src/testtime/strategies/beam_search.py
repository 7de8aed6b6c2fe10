"""Beam search under a process reward model (search-and-learn's `beam_search`; Snell et al. 2024, sec. 5.2).

n beams per problem, beam width M: every step, each kept beam is expanded to M children (one sampled step
each), all n children are scored, finished ones go to a separate pool of completed beams, and the best n/M
unfinished ones are kept. The search ends once n beams have completed or none is alive; the answer is picked
from the completed pool (`select`).

Differences from the reference, on purpose:
- `lookahead` k: the k greedy steps after the sampled step are what the PRM scores to rank the step (the
  reference generates the lookahead, then scores only the sampled step and throws the lookahead away).
- The search stops as soon as n beams have completed (the reference runs all iterations).
- Ties in the ranking break towards the lowest row (the reference's `np.argsort` leaves them unspecified).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._step_search import SearchState, StepRow, StepSearch, StepSearchParams, check_tree_params, expand

__all__ = ["BeamSearch", "BeamSearchParams"]


@dataclass
class BeamSearchParams(StepSearchParams):
    """Knobs of beam search (plus the shared ones of `StepSearchParams`)."""

    beam_width: int = 4
    """M: children per kept beam; n/M beams are kept each step. n must be a multiple of it."""
    lookahead: int = 0
    """k >= 0 greedy steps after each sampled step, scored to rank it (search-and-learn's `lookahead`); each
    costs a prefill of every unfinished beam. 0 scores the sampled step itself."""
    filter_duplicates: bool = False
    """Before ranking, drop unfinished beams whose text repeats an earlier beam's (keeps the beam diverse)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_tree_params(self)


class BeamSearch(StepSearch):
    name = "beam"
    params_class = BeamSearchParams

    def update(self, state: SearchState, rows: list[StepRow], final: bool) -> list[int]:
        n = state.n
        for r in rows:
            if r.finished:
                state.complete(r)
        # Stop once n beams have completed, or when every beam has (last iteration: all have).
        live = [i for i, r in enumerate(rows) if not r.finished]
        if final or len(state.pool) >= n or not live:
            return []
        if self.params.filter_duplicates:
            seen: set[str] = set()
            unique = []
            for i in live:
                if rows[i].text not in seen:
                    seen.add(rows[i].text)
                    unique.append(i)
            live = unique
        # Keep the best n/M by reduced score (ties: lowest row), then give each kept beam its children so that
        # n paths are alive again: M each, or n/k each when fewer than n/M beams are left (reference semantics).
        kept = sorted(sorted(live, key=lambda i: (-rows[i].score, i))[: n // self.params.beam_width])
        return expand(kept, n)
