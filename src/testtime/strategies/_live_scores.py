"""Scoring live rows from the generator's own hidden states, shared by the strategies that score partial paths.

A scorer that is a head on the generator (the built-in PRM head) can score a row of an in-process live batch
from the states the decode loop already computed: the batch tracks the layers the head reads, and a score is
one small matrix product, with no token pushed through any model again. Strategies that score partial paths
every step (beam search, DVTS, particle filtering, Speculative Rejection) would otherwise re-read the prompt
and the whole path for every row at every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .._errors import ValidationError
from ..engines import EngineView, HiddenStateBatch
from ..scorers import HiddenStateScorer

__all__ = ["PARTIAL_SCORES", "live_scorer"]

PARTIAL_SCORES = ("auto", "text", "hidden")
"""How rows are scored mid-generation: "text" (the scorer reads the text), "hidden" (from the live batch's
hidden states; needs a `HiddenStateScorer` of this engine and a `HiddenStateBatch`), "auto" (hidden when possible)."""


def live_scorer(scorer, engine, batch, how: str = "auto") -> Callable[[Sequence[int]], list[float]] | None:
    """A function mapping live-batch rows to scores read from the generator's hidden states, or None to score
    text. Call it before the batch's first advance: it makes the batch track the layers the scorer reads.

    Hidden-state scoring needs a head on this engine's model (`scorers.HiddenStateScorer` whose `engine` is
    `engine`) and a batch that keeps states (`engines.HiddenStateBatch`, the in-process engine's); every strategy
    that scores partial paths asks here."""
    real = engine.inner if isinstance(engine, EngineView) else engine  # a scheduler program's view of it
    can = isinstance(scorer, HiddenStateScorer) and scorer.engine is real and isinstance(batch, HiddenStateBatch)
    if not can:
        if how == "hidden":
            raise ValidationError(
                f"`partial_scores='hidden'` needs a scorer with `score_hidden` (a head on this generator's hidden states) and the in-process engine; got {type(scorer).__name__} on {engine!r}.",
                parameter="partial_scores",
                value=how,
            )
        return None
    if how == "text":
        return None
    layers = list(scorer.hidden_layers)
    batch.track_hidden_states(layers)
    return lambda rows: [float(s) for s in scorer.score_hidden(batch.last_hidden_states(layers)[list(rows)].float().cpu())]
