"""What every local reward-model family shares: loading, and batched reads of hidden states at chosen positions.

Each family only builds token ids and says where to read; `RewardModelRunner.read` runs the model's body
(the transformer without its output layer) over the sequences, sorted by length to cut padding, right-padded
with an attention mask, `batch_size` at a time, and returns the final hidden states at the requested positions.
The family then applies its own head (two rows of an LM head, a classifier, a value head) to those few vectors
only, so an 8B model with a 128k vocabulary never materializes (B, T, V) logits.

Right padding keeps read positions equal to the positions in the unpadded sequence; under a causal mask the
real tokens never attend to the pads, so padding cannot change a score (the tests check this).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .._errors import ScorerError, ValidationError
from ._protocol import ScorerUsage, as_request_list, split_steps

__all__ = ["RewardModelRunner", "DEFAULT_BATCH_SIZE", "default_dtype", "load_pretrained", "chat_ids", "token_id", "split_by"]

DEFAULT_BATCH_SIZE = 8


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the device supports it (CUDA with bf16), fp32 otherwise."""
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32


def _device(device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_pretrained(auto_class: str, model: str | Path, *, family: str, device, dtype, trust_remote_code: bool = False, **kwargs):
    """(model, tokenizer) from a local directory or hub id, with an error that names the family and the fix."""
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(model), trust_remote_code=trust_remote_code)
        cls = getattr(transformers, auto_class)
        hf = cls.from_pretrained(str(model), dtype=dtype, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScorerError(f"could not load the {family} reward model {str(model)!r}: {first} (pass --scorer-model with a local directory or a reachable hub id)") from None
    return hf.to(device).eval(), tokenizer


class RewardModelRunner:
    """A loaded reward model plus its tokenizer, device and batch size; reads hidden states at positions.

    Args:
        model: A loaded transformers model (its `base_model` is run) or a path / hub id, loaded with
            `auto_class` ("AutoModelForCausalLM", ...).
        tokenizer: Required with a model object.
        device: Default CUDA when available.
        dtype: Default bf16 on CUDA with bf16 support, fp32 otherwise.
        batch_size: Sequences per forward pass, >= 1.
    """

    def __init__(self, model, *, tokenizer=None, auto_class: str, family: str, device=None, dtype=None, batch_size: int = DEFAULT_BATCH_SIZE, trust_remote_code: bool = False, **load_kwargs) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.", parameter="batch_size", value=batch_size)
        if model is None:
            raise ValidationError(f"the {family} scorer needs a reward model: pass --scorer-model PATH_OR_HUB_ID.", parameter="scorer_model")
        self.device = _device(device)
        if isinstance(model, (str, Path)):
            dtype = dtype or default_dtype(self.device)
            self.model, self.tokenizer = load_pretrained(auto_class, model, family=family, device=self.device, dtype=dtype, trust_remote_code=trust_remote_code, **load_kwargs)
        else:
            if tokenizer is None:
                raise ValidationError("pass `tokenizer=` together with a model object.", parameter="tokenizer")
            self.model, self.tokenizer = model.to(self.device, dtype or default_dtype(self.device)).eval(), tokenizer
        self.batch_size = batch_size
        self.usage = ScorerUsage()
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)

    @property
    def body(self):
        """The transformer without its output layer (returns final-norm hidden states)."""
        return self.model.base_model

    @torch.inference_mode()
    def read(self, sequences: Sequence[Sequence[int]], positions: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """Final hidden states (P_i, C) of each sequence at its positions, in input order."""
        out: list[torch.Tensor] = [None] * len(sequences)  # type: ignore[list-item]
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))  # similar lengths pad less
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            T = max(len(sequences[i]) for i in idx)
            tokens = torch.full((len(idx), T), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), T), dtype=torch.long)
            for j, i in enumerate(idx):
                tokens[j, : len(sequences[i])] = torch.tensor(list(sequences[i]), dtype=torch.long)
                mask[j, : len(sequences[i])] = 1
            h = self.body(input_ids=tokens.to(self.device), attention_mask=mask.to(self.device))[0]  # (B, T, C)
            for j, i in enumerate(idx):
                rows = torch.tensor(list(positions[i]), dtype=torch.long, device=self.device)
                out[i] = h[j, rows]
            self.usage.num_tokens += int(mask.sum())
        return out

    def read_all(self, sequences: Sequence[Sequence[int]], positions: Sequence[Sequence[int]]) -> tuple[torch.Tensor, list[int]]:
        """`read`, concatenated into one (sum P_i, C) tensor, with the per-sequence counts to split it back."""
        hs = self.read(sequences, positions)
        counts = [len(p) for p in positions]
        if not hs or sum(counts) == 0:
            C = getattr(self.model.config, "hidden_size", 1)
            return torch.zeros(0, C, device=self.device), counts
        return torch.cat(hs), counts


def score_steps(runner: RewardModelRunner, requests, encode, read) -> list[list[list[float]]]:
    """The shared body of the step-reading families: encode each candidate that has a step (`encode(question,
    steps) -> (ids, positions)`), read the hidden states at those positions in length-sorted batches, map them
    to scores (`read(h) -> list[float]`) and give each candidate its list; candidates with no step get []."""
    reqs = as_request_list(requests)
    runner.usage.num_calls += 1
    seqs, positions, where = [], [], []
    for i, r in enumerate(reqs):
        for j, text in enumerate(r.candidates):
            steps = split_steps(text)
            if steps:
                ids, pos = encode(r.question, steps)
                seqs.append(ids)
                positions.append(pos)
                where.append((i, j))
    h, counts = runner.read_all(seqs, positions)
    with torch.inference_mode():
        values = read(h)
    out: list[list[list[float]]] = [[[] for _ in r.candidates] for r in reqs]
    for (i, j), s in zip(where, split_by(values, counts), strict=True):
        out[i][j] = s
    return out


def label_probs(model, label_ids: Sequence[int], h: torch.Tensor) -> torch.Tensor:
    """Softmax over just the LM-head rows of `label_ids` (e.g. "+" and "-") at hidden states h (P, C) -> (P, 2):
    a 128k-vocabulary PRM never builds full logits."""
    head = model.get_output_embeddings()
    logits = h @ head.weight[label_ids].T
    if getattr(head, "bias", None) is not None:
        logits = logits + head.bias[label_ids]
    return torch.softmax(logits.float(), -1)


def split_by(values: Sequence[float], counts: Sequence[int]) -> list[list[float]]:
    out, k = [], 0
    for n in counts:
        out.append(list(values[k : k + n]))
        k += n
    return out


def chat_ids(tokenizer, messages: list[dict[str, str]], *, add_generation_prompt: bool = False) -> list[int]:
    """Token ids of a rendered chat, as `apply_chat_template(..., tokenize=True)` makes them: the rendered
    text tokenized without adding special tokens (templates that need BOS write it themselves)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ScorerError("this reward model's tokenizer has no chat template, which its input format needs.")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def token_id(tokenizer, text: str, *, family: str, last: bool = False) -> int:
    """The id of `text`, which must be one token (the last token of its encoding with `last`)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids or (len(ids) != 1 and not last):
        raise ScorerError(f"the {family} format needs {text!r} to be one token in this tokenizer, got {len(ids)} tokens; is --scorer-model a {family} model?")
    return ids[-1]
