"""Scripted plans and scorers shared by the beam-search and DVTS tests."""

from __future__ import annotations

import itertools

from testtime.scorers import ScriptedScorer


class Plan:
    """Sampled step k (numbered across the run, in row order) writes `texts.get(k, f"s{k}")`; steps in `final`
    end the solution there (no separator: end of sequence). Greedy (lookahead) steps write L0, L1, ..."""

    def __init__(self, texts=None, final=()):
        self.texts, self.final = texts or {}, set(final)
        self.k, self.look = itertools.count(), itertools.count()

    def __call__(self, request, params, index):
        if params.temperature == 0:
            return f"L{next(self.look)}\n\nmore"
        k = next(self.k)
        text = self.texts.get(k, f"s{k}")
        return text if k in self.final else text + "\n\nmore"


def by_step(scores: dict[str, float], default: float = 0.0) -> ScriptedScorer:
    return ScriptedScorer(lambda q, steps: [scores.get(s, default) for s in steps])


def texts(call) -> list[str]:
    return [t for req in call for t in req.candidates]
