"""`rlhflow`: PRMs in the format of RLHFlow/Llama3.1-8B-PRM-Deepseek-Data (and -Mistral-Data).

The published format (model card; huggingface/search-and-learn `sal/models/reward_models.py` `RLHFlow`):
the solution is split into steps; the first step goes with the question in the first user turn
("{question} {step_1}"), each later step is its own user turn, and every user turn is followed by an assistant
turn "+". The step score is P("+") / (P("+") + P("-")) from the logits at the position that predicts each
assistant turn's first token, where "+" and "-" are the two tokens of `encode("+ -")` (the reference reads
position -3 of a conversation that ends with that step's "+" turn; we read every step in one pass).
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import ScorerError
from ._hf_batching import DEFAULT_BATCH_SIZE, RewardModelRunner, label_probs, split_by
from ._protocol import ScoreRequest, ScorerUsage, as_request_list, split_steps

__all__ = ["RLHFlowScorer", "plus_minus_ids"]


def plus_minus_ids(tokenizer, good: str, bad: str, *, family: str) -> list[int]:
    """Ids of the good and bad label tokens as the references pick them: the tokens of f"{good} {bad}"
    (without BOS), so on Llama-3 the bad token is " -"."""
    ids = tokenizer.encode(f"{good} {bad}", add_special_tokens=False)
    if len(ids) != 2:
        raise ScorerError(f"the {family} format needs {good!r} and {bad!r} to be one token each, got {len(ids)} tokens for {good + ' ' + bad!r}.")
    return list(ids)


class RLHFlowScorer:
    """Step scores from an RLHFlow-style PRM (a causal LM answering "+" or "-" after each step).

    Args:
        model: Local directory, hub id, or a loaded causal LM (then pass `tokenizer`).
        good_token, bad_token: The label tokens ("+", "-").
        device, dtype, batch_size: See `RewardModelRunner`.
    """

    name = "rlhflow"

    def __init__(self, model=None, *, tokenizer=None, good_token: str = "+", bad_token: str = "-", device=None, dtype=None, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.runner = RewardModelRunner(model, tokenizer=tokenizer, auto_class="AutoModelForCausalLM", family=self.name, device=device, dtype=dtype, batch_size=batch_size)
        self.good_token = good_token
        self.candidate_ids = plus_minus_ids(self.runner.tokenizer, good_token, bad_token, family=self.name)
        self.usage: ScorerUsage = self.runner.usage

    def encode(self, question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """Token ids of the conversation and, per step, the position whose logits predict its "+" turn.

        Positions come from characters, not from re-tokenizing prefixes: a prefix that ends in the assistant
        header may tokenize differently on its own ("\n\n" vs "\n", "\n" before "+") in some tokenizers.
        """
        tok = self.runner.tokenizer
        conv: list[dict[str, str]] = []
        starts = []  # character where each step's assistant "+" begins in the rendered conversation
        for k, step in enumerate(steps):
            conv.append({"role": "user", "content": f"{question} {step.strip()}" if k == 0 else step.strip()})
            starts.append(len(tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)))
            conv.append({"role": "assistant", "content": self.good_token})
        if not conv:
            return [], []
        text = tok.apply_chat_template(conv, tokenize=False)
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        positions = []
        for c in starts:
            if text[c : c + len(self.good_token)] != self.good_token:
                raise ScorerError("this chat template renders a conversation prefix differently from the whole conversation; the rlhflow format cannot be read with it.")
            first = next(t for t, (a, b) in enumerate(enc.offset_mapping) if b > c)  # the token holding "+"
            positions.append(first - 1)
        return list(enc.input_ids), positions

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]:
        reqs = as_request_list(requests)
        self.usage.num_calls += 1
        seqs, positions, where = [], [], []
        for i, r in enumerate(reqs):
            for j, text in enumerate(r.candidates):
                ids, pos = self.encode(r.question, split_steps(text))
                seqs.append(ids if pos else [])
                positions.append(pos)
                where.append((i, j))
        keep = [k for k, p in enumerate(positions) if p]
        h, counts = self.runner.read_all([seqs[k] for k in keep], [positions[k] for k in keep])
        probs = label_probs(self.runner.model, self.candidate_ids, h)[:, 0].tolist()  # P(+) vs P(-)
        out: list[list[list[float]]] = [[[] for _ in r.candidates] for r in reqs]
        for k, s in zip(keep, split_by(probs, counts)):
            i, j = where[k]
            out[i][j] = s
        return out
