"""`qwen-prm`: PRMs in the format of Qwen/Qwen2.5-Math-PRM-7B (and -72B).

The published format (model card): a chat with the system prompt "Please reason step by step, and put your
final answer within \\boxed{}.", the question as the user turn, and the steps joined by `<extra_0>` (plus a
final `<extra_0>`) as the assistant turn. The model (`Qwen2ForProcessRewardModel`, remote code) puts a
two-class head on every token; the step score is the softmax's positive class (index 1) at each `<extra_0>`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._errors import ScorerError
from ._hf_batching import DEFAULT_BATCH_SIZE, RewardModelRunner, chat_ids, score_steps, token_id
from ._protocol import ScoreRequest, ScorerUsage

__all__ = ["QwenPRMScorer", "QWEN_PRM_SYSTEM_PROMPT", "STEP_SEPARATOR_TOKEN"]

QWEN_PRM_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_SEPARATOR_TOKEN = "<extra_0>"


class QwenPRMScorer:
    """Step scores from a Qwen2.5-Math-PRM-style model (token-level two-class head).

    Args:
        model: Local directory or hub id (loaded with `AutoModel`, `trust_remote_code=True`), or a loaded model
            whose `base_model` gives hidden states and whose `score` maps them to two logits per token.
        system_prompt: The system turn the PRM was trained with.
        device, dtype, batch_size: See `RewardModelRunner`.
    """

    name = "qwen-prm"

    def __init__(self, model=None, *, tokenizer=None, system_prompt: str = QWEN_PRM_SYSTEM_PROMPT, device=None, dtype=None, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.runner = RewardModelRunner(model, tokenizer=tokenizer, auto_class="AutoModel", family=self.name, device=device, dtype=dtype, batch_size=batch_size, trust_remote_code=True)
        if not hasattr(self.runner.model, "score"):
            raise ScorerError("the qwen-prm scorer needs a model with a token-level `score` head (Qwen2ForProcessRewardModel).")
        self.system_prompt = system_prompt
        self.sep_id = token_id(self.runner.tokenizer, STEP_SEPARATOR_TOKEN, family=self.name)
        self.usage: ScorerUsage = self.runner.usage

    def encode(self, question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """Token ids of the chat and the positions of the `<extra_0>` after each step."""
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": question},
            {"role": "assistant", "content": STEP_SEPARATOR_TOKEN.join(s.strip() for s in steps) + STEP_SEPARATOR_TOKEN},
        ]
        ids = chat_ids(self.runner.tokenizer, messages)
        seps = [t for t, x in enumerate(ids) if x == self.sep_id]
        seps = seps[len(seps) - len(steps) :]  # a question containing the token cannot shift the reads
        if len(seps) != len(steps):
            raise ScorerError(f"expected {len(steps)} {STEP_SEPARATOR_TOKEN} tokens in the qwen-prm input, found {len(seps)}.")
        return ids, seps

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]:
        return score_steps(self.runner, requests, self.encode, lambda h: torch.softmax(self.runner.model.score(h).float(), -1)[:, 1].tolist())
