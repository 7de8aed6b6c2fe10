"""`math-shepherd`: PRMs in the format of peiyi9979/math-shepherd-mistral-7b-prm.

The published format (model card; search-and-learn `sal/models/reward_models.py` `MathShepherd`): the input
is f"{question} {solution}", where every step of the solution ends with the tag " ки" (steps one per line).
The step score is P("+") / (P("+") + P("-")) from the logits at each tag position, "+" and "-" being the two
tokens of `encode("+ -")` without BOS. Only tags inside the solution are read, so a question that happens
to contain "ки" cannot shift the scores.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import ScorerError
from ._hf_batching import DEFAULT_BATCH_SIZE, RewardModelRunner, label_probs, score_steps, token_id
from ._protocol import ScoreRequest, ScorerUsage
from .rlhflow import plus_minus_ids

__all__ = ["MathShepherdScorer", "STEP_TAG"]

STEP_TAG = "ки"


class MathShepherdScorer:
    """Step scores from a Math-Shepherd-style PRM (a causal LM predicting "+"/"-" at each step tag).

    Args:
        model: Local directory, hub id, or a loaded causal LM (then pass `tokenizer`).
        step_tag: The tag closing each step (" ки" in the text; its last token is read).
        device, dtype, batch_size: See `RewardModelRunner`.
    """

    name = "math-shepherd"

    def __init__(self, model=None, *, tokenizer=None, step_tag: str = STEP_TAG, good_token: str = "+", bad_token: str = "-", device=None, dtype=None, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.runner = RewardModelRunner(model, tokenizer=tokenizer, auto_class="AutoModelForCausalLM", family=self.name, device=device, dtype=dtype, batch_size=batch_size)
        self.step_tag = step_tag
        self.tag_id = token_id(self.runner.tokenizer, f" {step_tag}", family=self.name, last=True)
        self.candidate_ids = plus_minus_ids(self.runner.tokenizer, good_token, bad_token, family=self.name)
        self.usage: ScorerUsage = self.runner.usage

    def encode(self, question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """Token ids of f"{question} {solution}" (BOS as the tokenizer adds it) and the step tags' positions."""
        tok = self.runner.tokenizer
        solution = "\n".join(f"{s.strip()} {self.step_tag}" for s in steps)
        ids = list(tok(f"{question} {solution}").input_ids)
        start = len(tok(question).input_ids) - 1  # tags from here on belong to the solution
        tags = [t for t, x in enumerate(ids) if x == self.tag_id and t >= start]
        if len(tags) != len(steps):
            raise ScorerError(f"expected {len(steps)} step tags ({self.step_tag!r}) in the math-shepherd input, found {len(tags)}; a step may contain the tag or merge with it.")
        return ids, tags

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]:
        return score_steps(self.runner, requests, self.encode, lambda h: label_probs(self.runner.model, self.candidate_ids, h)[:, 0].tolist())
