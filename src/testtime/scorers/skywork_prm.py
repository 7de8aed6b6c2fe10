"""`skywork-prm`: PRMs in the format of Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B (and -7B).

The published format (SkyworkAI/skywork-o1-prm-inference, `prepare_input` and `derive_step_rewards`): the ids
are encode(bos_token + question + "\\n"), then for each step encode(step) followed by the step token's id
("\\n"); a value head (`v_head.summary`, a Linear(hidden, 1)) on the last hidden state gives one value per
token, and the step score is sigmoid(value) at each step's final token (the appended step token).

The reference also scores an empty step after a trailing separator (`"a\\n".split("\\n")` ends in ""), which
ranks beams by the value of an empty step; `split_steps` drops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .._errors import ScorerError
from ._hf_batching import DEFAULT_BATCH_SIZE, RewardModelRunner, score_steps, token_id
from ._protocol import ScoreRequest, ScorerUsage

__all__ = ["SkyworkPRMScorer", "load_value_head"]


def load_value_head(model_dir: str | Path, hidden_size: int, *, prefix: str = "v_head.summary.") -> torch.nn.Linear:
    """The value head stored next to the LM weights (keys `v_head.summary.weight` / `.bias`)."""
    from safetensors import safe_open

    path = Path(model_dir)
    if not path.is_dir():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(str(model_dir), allow_patterns=["*.safetensors", "*.json"]))
        except Exception as exc:  # noqa: BLE001 - any hub failure means "not available here"
            raise ScorerError(f"could not find the value head of {str(model_dir)!r}: {exc}") from None
    tensors = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                if key.startswith(prefix):
                    tensors[key[len(prefix) :]] = st.get_tensor(key)
    if "weight" not in tensors:
        raise ScorerError(f"{path} has no `{prefix}weight` tensor; is it a Skywork-o1-Open-PRM checkpoint?")
    head = torch.nn.Linear(hidden_size, 1, bias="bias" in tensors)
    head.weight.data.copy_(tensors["weight"].reshape(1, hidden_size))
    if "bias" in tensors:
        head.bias.data.copy_(tensors["bias"].reshape(1))
    return head


class SkyworkPRMScorer:
    """Step scores from a Skywork-o1-Open-PRM-style model (a value head on a causal LM's last hidden state).

    Args:
        model: Local directory or hub id (LM weights plus `v_head.summary.*`), or a loaded model (then pass
            `tokenizer` and `value_head`).
        value_head: A Linear(hidden, 1); loaded from the checkpoint when `model` is a path.
        step_token: Appended after every step; its position is read ("\\n" as in the reference).
        device, dtype, batch_size: See `RewardModelRunner`.
    """

    name = "skywork-prm"

    def __init__(self, model=None, *, tokenizer=None, value_head: torch.nn.Module | None = None, step_token: str = "\n", device=None, dtype=None, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.runner = RewardModelRunner(model, tokenizer=tokenizer, auto_class="AutoModelForCausalLM", family=self.name, device=device, dtype=dtype, batch_size=batch_size)
        if value_head is None:
            if not isinstance(model, (str, Path)):
                raise ScorerError("pass `value_head=` together with a model object.")
            value_head = load_value_head(model, self.runner.model.config.hidden_size)
        param = next(self.runner.model.parameters())
        self.value_head = value_head.to(device=param.device, dtype=param.dtype).eval()
        self.step_token_id = token_id(self.runner.tokenizer, step_token, family=self.name, last=True)
        self.usage: ScorerUsage = self.runner.usage

    def encode(self, question: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
        """Token ids as `prepare_input` builds them and the positions of each step's final token."""
        tok = self.runner.tokenizer
        ids = list(tok.encode((tok.bos_token or "") + question + "\n"))
        positions = []
        for step in steps:
            ids += list(tok.encode(step.strip())) + [self.step_token_id]
            positions.append(len(ids) - 1)
        return ids, positions

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]:
        return score_steps(self.runner, requests, self.encode, lambda h: torch.sigmoid(self.value_head(h).float()[:, 0]).tolist())
