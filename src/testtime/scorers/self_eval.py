"""Self-evaluation: the generator's own probability that a solution is correct.

After the solution, the model is asked "Is this solution correct? Answer Yes or No." and we read
P(Yes) / (P(Yes) + P(No)) from its next-token distribution (summing over the tokenizations " Yes", "Yes",
"yes"). It needs no extra model and no training, so it is available for any in-process generator; on small
models its signal is weak (see BENCHMARKS.md), which is why trained PRMs exist.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._errors import ScorerError, ValidationError
from ..engines import ModelEngine, Request
from ._protocol import ScoreRequest, ScorerUsage, as_request_list, split_steps

__all__ = ["SelfEvalScorer", "DEFAULT_SELF_EVAL_PROMPT"]

DEFAULT_SELF_EVAL_PROMPT = (
    "Here is a math problem and a proposed solution.\n\nProblem:\n{question}\n\nProposed solution:\n{solution}\n\n"
    "Is the proposed solution correct? Answer Yes or No."
)


def _token_ids(tokenizer, words: Sequence[str]) -> list[int]:
    ids = set()
    for w in words:
        enc = tokenizer(w, add_special_tokens=False).input_ids
        if len(enc) == 1:
            ids.add(enc[0])
    return sorted(ids)


class SelfEvalScorer:
    """Scores with the generator's own Yes/No verdict.

    Args:
        engine: An in-process engine (`TransformersEngine`): the scorer reads its next-token distribution.
        per_step: Score every step prefix (a PRM-like list) instead of only the whole text.
        prompt: Template with `{question}` and `{solution}`.
        batch_size: Sequences per forward pass.
    """

    name = "self-eval"
    needs_engine = True  # reads the generator's model: `load_scorer` passes the engine

    def __init__(self, engine, *, per_step: bool = False, prompt: str = DEFAULT_SELF_EVAL_PROMPT, batch_size: int = 16) -> None:
        if not isinstance(engine, ModelEngine):
            raise ScorerError(f"the self-eval scorer needs an in-process engine with model access, not {engine!r}.")
        if batch_size < 1:
            raise ValidationError(f"`batch_size` must be >= 1, got {batch_size}.", parameter="batch_size", value=batch_size)
        self.engine = engine
        self.per_step = per_step
        self.prompt = prompt
        self.batch_size = batch_size
        self.usage = ScorerUsage()
        tok = engine.tokenizer
        self.yes_ids = _token_ids(tok, ["Yes", " Yes", "yes", " yes"])
        self.no_ids = _token_ids(tok, ["No", " No", "no", " no"])
        if not self.yes_ids or not self.no_ids:
            raise ScorerError("the self-eval scorer needs single-token 'Yes' and 'No' in the generator's vocabulary.")

    def _sequence(self, question: str, solution: str) -> list[int]:
        content = self.prompt.format(question=question, solution=solution.strip())
        return self.engine.encode(Request(messages=[{"role": "user", "content": content}]))

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]:
        reqs = as_request_list(requests)
        self.usage.num_calls += 1
        seqs, where = [], []  # where[k] = (request, candidate) of sequence k
        for i, r in enumerate(reqs):
            for j, text in enumerate(r.candidates):
                steps = split_steps(text)
                prefixes = ["\n\n".join(steps[: s + 1]) for s in range(len(steps))] if self.per_step else [text]
                for prefix in prefixes:
                    seqs.append(self._sequence(r.question, prefix))
                    where.append((i, j))
        out: list[list[list[float]]] = [[[] for _ in r.candidates] for r in reqs]
        if seqs:
            logprobs = self.engine.next_token_logprobs(seqs, batch_size=self.batch_size)  # (N, V)
            p_yes = torch.logsumexp(logprobs[:, self.yes_ids], -1)
            p_no = torch.logsumexp(logprobs[:, self.no_ids], -1)
            scores = torch.sigmoid(p_yes - p_no).tolist()  # P(yes) / (P(yes) + P(no))
            for (i, j), s in zip(where, scores):
                out[i][j].append(s)
            self.usage.num_tokens += sum(len(s) for s in seqs)
        return out
