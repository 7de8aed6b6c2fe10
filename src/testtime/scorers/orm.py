"""`orm`: outcome reward models, any `AutoModelForSequenceClassification` (Skywork-Reward, ArmoRM-like).

Input: the chat [user: question, assistant: solution] in the reward model's own template. Output: one score
for the whole text, in a one-element list; a partial solution gets the score of the text so far (Speculative
Rejection ranks partial generations this way).

Standard classifiers pool the last token's hidden state through a `score` Linear; we read that position
ourselves instead of trusting the model to find it from the pad id (a template that ends with the pad token,
e.g. pad == eos, would make the model pool the wrong token). Multi-objective models with custom outputs
(ArmoRM's `score` / `rewards`) are run whole, one sequence at a time, and read through `objective`.
Scores are squashed to [0, 1] with a sigmoid unless `transform="identity"`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._errors import ScorerError, ValidationError
from ._hf_batching import DEFAULT_BATCH_SIZE, RewardModelRunner, chat_ids
from ._protocol import ScoreRequest, ScorerUsage, as_request_list

__all__ = ["ORMScorer"]

TRANSFORMS = ("sigmoid", "identity")


class ORMScorer:
    """One score per candidate from a sequence-classification reward model.

    Args:
        model: Local directory, hub id, or a loaded sequence-classification model (then pass `tokenizer`).
        head: Which output column is the reward (0 for single-head models; an objective's index otherwise).
        objective: Read this attribute of the model's output instead of `logits` (e.g. "score" for ArmoRM);
            such models are run one sequence at a time. None reads the classifier at the last token.
        transform: "sigmoid" maps raw rewards to (0, 1); "identity" keeps them (for rewards already in [0, 1]).
        trust_remote_code: Needed by custom reward models such as ArmoRM.
        device, dtype, batch_size: See `RewardModelRunner`.
    """

    name = "orm"

    def __init__(self, model=None, *, tokenizer=None, head: int = 0, objective: str | None = None, transform: str = "sigmoid", trust_remote_code: bool = False, device=None, dtype=None, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if transform not in TRANSFORMS:
            raise ValidationError(f"`transform` must be one of {', '.join(TRANSFORMS)}, got {transform!r}.", parameter="transform", value=transform)
        self.runner = RewardModelRunner(model, tokenizer=tokenizer, auto_class="AutoModelForSequenceClassification", family=self.name, device=device, dtype=dtype, batch_size=batch_size, trust_remote_code=trust_remote_code)
        num_labels = getattr(self.runner.model.config, "num_labels", 1)
        if objective is None and not hasattr(self.runner.model, "score"):
            raise ScorerError("this reward model has no `score` classifier; name its output with `objective`.")
        if objective is None and not 0 <= head < num_labels:
            raise ValidationError(f"`head` must be in [0, {num_labels - 1}] for this model, got {head}.", parameter="head", value=head)
        self.head, self.objective, self.transform = head, objective, transform
        self.usage: ScorerUsage = self.runner.usage

    def encode(self, question: str, solution: str) -> list[int]:
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": solution.strip()}]
        return chat_ids(self.runner.tokenizer, messages)

    @torch.inference_mode()
    def _raw(self, seqs: list[list[int]]) -> list[float]:
        if self.objective is None:
            h, _ = self.runner.read_all(seqs, [[len(s) - 1] for s in seqs])
            return self.runner.model.score(h).float()[:, self.head].tolist()
        out = []
        for s in seqs:
            res = self.runner.model(input_ids=torch.tensor([s], device=self.runner.device))
            value = getattr(res, self.objective, None)
            if value is None:
                raise ScorerError(f"the reward model's output has no {self.objective!r}; check --orm objective.")
            out.append(float(value.reshape(-1)[self.head]))
            self.usage.num_tokens += len(s)
        return out

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]:
        reqs = as_request_list(requests)
        self.usage.num_calls += 1
        seqs, where = [], []
        for i, r in enumerate(reqs):
            for j, text in enumerate(r.candidates):
                if text.strip():  # nothing written yet: no score (reduces to 0.0)
                    seqs.append(self.encode(r.question, text))
                    where.append((i, j))
        raw = self._raw(seqs) if seqs else []
        out: list[list[list[float]]] = [[[] for _ in r.candidates] for r in reqs]
        for (i, j), x in zip(where, raw):
            out[i][j] = [float(torch.sigmoid(torch.tensor(x))) if self.transform == "sigmoid" else x]
        return out
