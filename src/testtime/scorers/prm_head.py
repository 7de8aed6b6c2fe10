"""The built-in PRM: a small head on the generator's own frozen hidden states at step boundaries.

The head is trained by `testtime train-prm` (Math-Shepherd labels: the share of Monte-Carlo completions from a
step prefix that reach the right answer) and reads the hidden state at the token holding each step's last
non-blank character. The read position depends only on the text up to that character, so a step scores the
same whether it is followed by more steps, by a separator, or by nothing: scoring a partial solution equals
scoring the same prefix of a complete one, and an empty trailing step is never scored.

A head is two files: `NAME.safetensors` (tensors `mean`, `std`, `w1`, `b1`, and for an MLP `w2`, `b2`) and
`NAME.json` (the layers it reads, the model it was trained on, training settings and validation metrics).
The head for the embedded model ships in `testtime/scorers/heads/`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._errors import ScorerError, ValidationError
from ..engines import ModelEngine, Request
from ..engines._sessions import cache_kwarg
from ._protocol import STEP_SEPARATOR, ScoreRequest, ScorerUsage, as_request_list, split_steps

__all__ = ["PRMHead", "PRMHeadScorer", "HEADS_DIR", "SHIPPED_HEADS", "find_head", "model_fingerprint", "step_read_positions", "step_features"]

HEADS_DIR = Path(__file__).parent / "heads"
SHIPPED_HEADS = ("smollm2-135m-instruct-arith",)
"""Heads inside the package, tried in order by `find_head`."""
DEFAULT_BATCH_SIZE = 8


def model_fingerprint(model) -> dict:
    """What a head must match: architecture sizes and a checksum of the first embedding rows (tells a
    fine-tuned variant with the same shapes apart)."""
    cfg = model.config
    emb = model.get_input_embeddings().weight.detach()
    return {
        "model_type": cfg.model_type,
        "hidden_size": int(cfg.hidden_size),
        "num_hidden_layers": int(cfg.num_hidden_layers),
        "vocab_size": int(emb.shape[0]),
        "embed_checksum": round(float(emb[:64].double().abs().sum()), 3),
    }


def _fingerprints_match(a: dict, b: dict) -> bool:
    keys = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")
    if any(a.get(k) != b.get(k) for k in keys):
        return False
    ca, cb = a.get("embed_checksum"), b.get("embed_checksum")
    # bf16 weights round the checksum; 0.5% covers that, not a different model.
    return ca is None or cb is None or abs(ca - cb) <= 5e-3 * max(abs(ca), abs(cb), 1.0)


@dataclass
class PRMHead:
    """A logistic-regression (no `w2`) or one-hidden-layer MLP head over standardized features."""

    layers: list[int] = field(default_factory=lambda: [-1])
    """Hidden-state layers read, concatenated (transformers' `hidden_states` indexing: -1 is the final-norm output)."""
    mean: torch.Tensor | None = None
    """(F,) feature mean from the training set."""
    std: torch.Tensor | None = None
    """(F,) feature std from the training set."""
    w1: torch.Tensor | None = None
    """(H, F) first layer; H = 1 for logistic regression."""
    b1: torch.Tensor | None = None
    w2: torch.Tensor | None = None
    """(1, H) output layer of an MLP; None for logistic regression."""
    b2: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)
    """Model fingerprint, training settings and validation metrics (written to the .json file)."""

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """P(step prefix leads to a correct answer) for features (N, F) -> (N,)."""
        x = (features.float() - self.mean) / self.std
        z = x @ self.w1.T + self.b1  # (N, H)
        if self.w2 is not None:
            z = torch.relu(z) @ self.w2.T + self.b2  # (N, 1)
        return torch.sigmoid(z[:, 0])

    def save(self, path: str | Path) -> Path:
        """Write `path` (.safetensors) and its .json sidecar; returns the .safetensors path."""
        from safetensors.torch import save_file

        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: getattr(self, k).contiguous().float() for k in ("mean", "std", "w1", "b1", "w2", "b2") if getattr(self, k) is not None}
        save_file(tensors, str(path))
        path.with_suffix(".json").write_text(json.dumps({"layers": self.layers, **self.meta}, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> PRMHead:
        from safetensors.torch import load_file

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_suffix(".safetensors")
        if not path.exists() or not path.with_suffix(".json").exists():
            raise ScorerError(f"no PRM head at {path} (a head is NAME.safetensors plus NAME.json; train one with `testtime train-prm`)")
        tensors = load_file(str(path))
        meta = json.loads(path.with_suffix(".json").read_text())
        layers = meta.pop("layers")
        return cls(layers=layers, meta=meta, **{k: tensors.get(k) for k in ("mean", "std", "w1", "b1", "w2", "b2")})


def find_head(model) -> Path | None:
    """The shipped head trained on this model, or None."""
    fp = model_fingerprint(model)
    for name in SHIPPED_HEADS:
        meta_path = HEADS_DIR / f"{name}.json"
        if meta_path.exists() and _fingerprints_match(json.loads(meta_path.read_text()).get("model", {}), fp):
            return meta_path.with_suffix(".safetensors")
    return None


def step_read_positions(tokenizer, text: str, separator: str = STEP_SEPARATOR) -> tuple[list[int], list[int]]:
    """Token ids of `text` and, per step of `split_steps(text)`, the index of the token holding the step's last
    non-blank character (a blank step reads where the text before it ends)."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc.input_ids), list(enc.offset_mapping)
    positions, start = [], 0
    for step in split_steps(text, separator):
        end = start + len(step.rstrip())
        last_char = max(len(text[:end].rstrip()) - 1, 0)
        # The last token starting at or before the character (byte-level tokens may share a character).
        pos = max((t for t, (a, _) in enumerate(offsets) if a <= last_char), default=0)
        positions.append(pos)
        start += len(step) + len(separator)
    return ids, positions


@torch.inference_mode()
def step_features(
    engine,
    messages: list[dict[str, str]],
    texts: Sequence[str],
    *,
    layers: Sequence[int] = (-1,),
    batch_size: int = DEFAULT_BATCH_SIZE,
    usage: ScorerUsage | None = None,
) -> list[torch.Tensor]:
    """Per text, the generator's hidden states (S, F) at each step's last token, the chosen `layers` concatenated.

    Each text is run as the partial assistant answer to `messages`, exactly as the generator saw it. The prompt
    (system, few-shot turns, question: most of the tokens) runs once and its KV cache is shared by every text;
    texts are batched by length, right-padded, with an attention mask (a causal model's real tokens never see
    the pads).
    """
    tok, model = engine.tokenizer, engine.model
    prompt = engine.encode(Request(messages=messages))
    device = next(model.parameters()).device
    P = len(prompt)
    cache_arg = cache_kwarg(model)  # "cache" on current transformers: `past_key_values` warns, and goes in 5.40
    cache = model(input_ids=torch.tensor([prompt], device=device), use_cache=True)[cache_arg]
    if usage is not None:
        usage.num_tokens += P
        usage.num_prefix_tokens += P
    width = model.config.hidden_size * len(layers)
    out: list[torch.Tensor] = [torch.zeros(0, width) for _ in texts]
    seqs, reads = [], []
    for text in texts:
        ids, pos = step_read_positions(tok, text)
        seqs.append(ids)
        reads.append(pos)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    order = sorted((i for i in range(len(texts)) if reads[i]), key=lambda i: len(seqs[i]))  # similar lengths pad less
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        B, T = len(idx), max(len(seqs[i]) for i in idx)
        tokens = torch.full((B, T), pad, dtype=torch.long)
        mask = torch.zeros((B, P + T), dtype=torch.long)
        mask[:, :P] = 1
        for j, i in enumerate(idx):
            tokens[j, : len(seqs[i])] = torch.tensor(seqs[i])
            mask[j, P : P + len(seqs[i])] = 1
        rows_cache = copy.deepcopy(cache)
        rows_cache.batch_repeat_interleave(B)  # (B, ..., P, D): every text continues the same prompt
        positions = torch.arange(P, P + T).expand(B, T)
        res = model(input_ids=tokens.to(device), attention_mask=mask.to(device), position_ids=positions.to(device), output_hidden_states=True, **{cache_arg: rows_cache})
        hs = res.hidden_states  # L+1 tensors (B, T, C) over the texts' tokens
        for j, i in enumerate(idx):
            rows = torch.tensor(reads[i], dtype=torch.long, device=device)
            out[i] = torch.cat([hs[layer][j, rows].float() for layer in layers], -1).cpu()  # (S, F)
        if usage is not None:
            usage.num_tokens += int(mask[:, P:].sum())
    return out


class PRMHeadScorer:
    """Per-step scores from a trained head on the generator's hidden states (`testtime train-prm`).

    Args:
        engine: The in-process engine (`TransformersEngine`) that generated the candidates.
        head: A head file (.safetensors with its .json), a `PRMHead`, or None for the head shipped for this
            engine's model.
        batch_size: Sequences per forward pass.
    """

    name = "prm-head"
    needs_engine = True  # reads the generator's model: `load_scorer` passes the engine

    def __init__(self, engine, *, head: str | Path | PRMHead | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if not isinstance(engine, ModelEngine):
            raise ScorerError(f"the prm-head scorer reads the generator's hidden states and needs an in-process engine, not {engine!r}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.", parameter="batch_size", value=batch_size)
        if head is None:
            head = find_head(engine.model)
            if head is None:
                raise ScorerError(
                    f"no shipped PRM head matches {engine.model_name!r}; train one with `testtime train-prm --model "
                    f"{engine.model_name}` and pass it as --scorer HEAD.safetensors"
                )
        self.head = head if isinstance(head, PRMHead) else PRMHead.load(head)
        want = self.head.meta.get("model", {})
        if want and not _fingerprints_match(want, model_fingerprint(engine.model)):
            raise ScorerError(f"this PRM head was trained on a different model ({want.get('model_type')}, hidden {want.get('hidden_size')}) than {engine.model_name!r}.")
        self.engine = engine
        self.batch_size = batch_size
        self.usage = ScorerUsage()

    @property
    def hidden_layers(self) -> list[int]:
        """The generator layers the head reads: a live batch that tracks them can be scored by `score_hidden`."""
        return list(self.head.layers)

    def score_hidden(self, features: torch.Tensor) -> list[float]:
        """Head scores of (N, F) hidden states taken from the generator's own decode loop
        (`LiveBatch.last_hidden_states(self.hidden_layers)`): no token goes through the model again, so the
        usage counts a call and no tokens. At a step boundary the live state is the step's last visible token,
        the position `score` reads for that step."""
        self.usage.num_calls += 1
        return self.head(features.float().cpu()).tolist()

    def score(self, requests: ScoreRequest | Sequence[ScoreRequest]) -> list[list[list[float]]]:
        reqs = as_request_list(requests)
        self.usage.num_calls += 1
        out: list[list[list[float]]] = []
        for r in reqs:
            messages = r.messages or [{"role": "user", "content": r.question}]
            texts = list(r.candidates)
            feats = step_features(self.engine, messages, texts, layers=self.head.layers, batch_size=self.batch_size, usage=self.usage)
            out.append([self.head(f).tolist() if len(f) else [] for f in feats])
        return out
