"""`ScriptedScorer`: a fake scorer driven by a function, the scorer-side twin of `ScriptedEngine`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._protocol import ScoreRequest, ScorerUsage, as_request_list, split_steps

__all__ = ["ScriptedScorer"]


class ScriptedScorer:
    """Scores from `fn(question, steps) -> per-step scores`; counts one token per character scored: the question
    once per candidate, or once per request with `shared_prompt` (as the PRM head, which reads the prompt once
    and shares its cache; those count as prefix tokens).

    Every call is recorded in `calls` (a list of the ScoreRequests of each call) so tests can assert what was
    scored and when.
    """

    name = "scripted"

    def __init__(self, fn: Callable[[str, list[str]], list[float]], *, shared_prompt: bool = False) -> None:
        self.fn = fn
        self.shared_prompt = shared_prompt
        self.usage = ScorerUsage()
        self.calls: list[list[ScoreRequest]] = []

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]:
        reqs = as_request_list(requests)
        self.usage.num_calls += 1
        self.calls.append(reqs)
        out = []
        for r in reqs:
            out.append([list(self.fn(r.question, split_steps(text))) for text in r.candidates])
            if self.shared_prompt:
                self.usage.num_tokens += len(r.question) + sum(len(t) for t in r.candidates)
                self.usage.num_prefix_tokens += len(r.question)
            else:
                self.usage.num_tokens += sum(len(r.question) + len(t) for t in r.candidates)
        return out
