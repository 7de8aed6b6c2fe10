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

__all__ = ["PARTIAL_SCORES", "live_scorer"]

PARTIAL_SCORES = ("auto", "text", "hidden")
"""How rows are scored mid-generation: "text" (the scorer reads the text), "hidden" (from the live batch's
hidden states; needs a scorer with `score_hidden` tied to this engine), "auto" (hidden when possible)."""


def live_scorer(scorer, engine, batch, how: str = "auto") -> Callable[[Sequence[int]], list[float]] | None:
    """A function mapping live-batch rows to scores read from the generator's hidden states, or None to score
    text. Call it before the batch's first advance: it makes the batch track the layers the scorer reads.

    Scorers opt in with `score_hidden(features) -> list[float]` and `hidden_layers` (default [-1], the
    final-norm state); a scorer tied to an engine (`scorer.engine`) must be tied to this one."""
    fn = getattr(scorer, "score_hidden", None)
    layers = list(getattr(scorer, "hidden_layers", [-1]))
    own = getattr(scorer, "engine", engine) is engine
    if fn is None or not own or not hasattr(batch, "track_hidden_states"):
        if how == "hidden":
            raise ValidationError(
                f"`partial_scores='hidden'` needs a scorer with `score_hidden` (a head on this generator's hidden states) and the in-process engine; got {type(scorer).__name__} on {engine!r}.",
                parameter="partial_scores",
                value=how,
            )
        return None
    if how == "text":
        return None
    batch.track_hidden_states(layers)
    return lambda rows: [float(s) for s in fn(batch.last_hidden_states(layers)[list(rows)].float().cpu())]
