"""Reward models behind one protocol: `score(requests) -> per-step scores`, and their reductions."""

from __future__ import annotations

from .._errors import UnknownNameError
from ._protocol import (
    REDUCTIONS,
    STEP_SEPARATOR,
    Reduction,
    Scorer,
    ScoreRequest,
    ScorerUsage,
    reduce_scores,
    split_steps,
)
from .oracle import OracleScorer
from .remote import RemoteScorer
from .scripted import ScriptedScorer
from .self_eval import SelfEvalScorer

__all__ = [
    "REDUCTIONS",
    "SCORERS",
    "STEP_SEPARATOR",
    "OracleScorer",
    "Reduction",
    "RemoteScorer",
    "ScoreRequest",
    "Scorer",
    "ScorerUsage",
    "ScriptedScorer",
    "SelfEvalScorer",
    "load_scorer",
    "reduce_scores",
    "split_steps",
]

SCORERS = {
    "oracle": OracleScorer,
    "self-eval": SelfEvalScorer,
    "remote": RemoteScorer,
}
"""Scorer name -> class. "default" resolves to the best scorer that works offline for the engine."""

DEFAULT_SCORER = "self-eval"


def load_scorer(name: str, *, engine=None, **kwargs) -> Scorer:
    """Build a scorer by name; scorers that read the generator's model get `engine`."""
    key = DEFAULT_SCORER if name == "default" else name
    if key not in SCORERS:
        raise UnknownNameError("scorer", name, [*SCORERS, "default"])
    if key == "self-eval":
        return SelfEvalScorer(engine, **kwargs)
    return SCORERS[key](**kwargs)
