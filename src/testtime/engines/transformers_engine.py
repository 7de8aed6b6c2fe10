"""`TransformersEngine`: in-process generation with our own batched decode loop over a transformers model.

Llama-family checkpoints run on the native forward (`_llama.py`); any other causal LM runs through the
transformers module with its DynamicCache (`_sessions.HFSession`). `generate` is a continuous-batching
scheduler written on the live-batch operations: admit requests while there are free rows, advance a chunk of
tokens, harvest finished rows, repeat.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections import deque
from dataclasses import replace
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .._errors import EngineError, ValidationError
from ._embedded import EMBEDDED_MODEL_NAMES, embedded_model_dir
from ._live import TransformersLiveBatch, as_lists
from ._llama import LlamaRunner
from ._prefix_cache import BLOCK_TOKENS, DEFAULT_PREFIX_CACHE_TOKENS, PrefixCache
from ._prompt import encode_request, eos_token_ids
from ._sessions import HFSession, NativeSession, _left_pad
from ._types import Completion, EngineUsage, Request, RequestOutput, SamplingParams

__all__ = ["TransformersEngine", "DEFAULT_MODEL", "DEFAULT_MAX_BATCH_SIZE"]

DEFAULT_MODEL = "default"
DEFAULT_MAX_BATCH_SIZE = 64  # rows decoded together; batch 64 is ~1.3x the tokens/s of batch 32 on 2 CPU cores
ADVANCE_CHUNK = 32  # tokens between harvesting finished rows and admitting new requests in `generate`


def _inference(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.inference_mode():
            return fn(*args, **kwargs)

    return wrapper


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(model: str | Path, *, device: torch.device, dtype: torch.dtype | None):
    """Load (model, tokenizer) from a name, local directory or hub id, with errors that say what to do."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = str(model)
    path = embedded_model_dir() if name.lower() in EMBEDDED_MODEL_NAMES else name
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar on every load is noise
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineError(
            f"could not load model {name!r}: {first} (pass a local directory, a hub id reachable from here, "
            f"or one of {', '.join(EMBEDDED_MODEL_NAMES)})"
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return hf_model.to(device).eval(), tokenizer


class TransformersEngine:
    """Generate with a transformers causal LM in this process.

    Args:
        model: "default" (the embedded SmolLM2-135M-Instruct), a local directory, or a hub id; or an already
            loaded `PreTrainedModel` (then pass `tokenizer`).
        tokenizer: Required with a model object; loaded from `model` otherwise.
        device: "cpu", "cuda", ...; default CUDA when available.
        dtype: Default fp32 on CPU, bf16 on CUDA.
        max_batch_size: Rows decoded together in `generate`.
        seed: Seeds completions whose `SamplingParams.seed` is None, making whole runs reproducible.
        native: Use the native Llama-family forward (default: whenever the architecture allows).
        prefix_cache_tokens: Prompt tokens whose keys and values are kept for later prompts that start the same
            way (automatic prefix caching; the native forward only): a prompt computes only what follows its
            longest cached prefix. 0 disables. Default 8192 (~380 MB for the embedded model in fp32).
    """

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        tokenizer=None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        seed: int | None = None,
        native: bool | None = None,
        prefix_cache_tokens: int = DEFAULT_PREFIX_CACHE_TOKENS,
    ) -> None:
        if not isinstance(prefix_cache_tokens, int) or isinstance(prefix_cache_tokens, bool) or 0 < prefix_cache_tokens < BLOCK_TOKENS or prefix_cache_tokens < 0:
            raise ValidationError(
                f"`prefix_cache_tokens` must be 0 (off) or an integer >= {BLOCK_TOKENS} (one block), got {prefix_cache_tokens!r}.",
                parameter="prefix_cache_tokens",
                value=prefix_cache_tokens,
            )
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValidationError(f"`max_batch_size` must be an integer >= 1, got {max_batch_size!r}.", parameter="max_batch_size", value=max_batch_size)
        self.device = torch.device(device) if device is not None else _default_device()
        if isinstance(model, (str, Path)):
            self.model_name = str(model)
            self.model, self.tokenizer = load_model(model, device=self.device, dtype=dtype)
        else:
            if tokenizer is None:
                raise ValidationError("pass `tokenizer=` together with a model object.", parameter="tokenizer")
            self.model_name = getattr(model.config, "_name_or_path", type(model).__name__)
            self.model, self.tokenizer = model.to(self.device).eval(), tokenizer
        if native and not LlamaRunner.supports(self.model):
            raise ValidationError(
                f"the native forward supports Llama, Mistral, Qwen2 and Qwen3 models, not {self.model.config.model_type!r}; "
                "leave `native` unset to use the transformers forward.",
                parameter="native",
            )
        use_native = LlamaRunner.supports(self.model) if native is None else native
        with torch.inference_mode():
            self.runner = LlamaRunner(self.model) if use_native else None
        # One prefix cache per engine, shared by all its live batches (they run one model, from one thread).
        self.prefix_cache = PrefixCache(prefix_cache_tokens) if self.runner is not None and prefix_cache_tokens else None
        self.max_batch_size = max_batch_size
        self.max_model_len = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.eos_ids = eos_token_ids(self.tokenizer, getattr(self.model, "generation_config", None))
        self.usage = EngineUsage()
        self._seeds = random.Random(seed)
        self._spare: TransformersLiveBatch | None = None  # the last `generate` batch, emptied, kept for the next

    def __repr__(self) -> str:
        path = "native" if self.runner is not None else "transformers"
        return f"TransformersEngine({self.model_name!r}, device={str(self.device)!r}, forward={path!r})"

    def next_seed(self) -> int:
        return self._seeds.getrandbits(63)

    def _session(self):
        return NativeSession(self.runner, self.prefix_cache) if self.runner is not None else HFSession(self.model)

    # -- live batches ------------------------------------------------------------------------------------
    @_inference
    def start(self, requests: Request | Sequence[Request] = (), params: SamplingParams | Sequence[SamplingParams] | None = None) -> TransformersLiveBatch:
        batch = _InferenceLiveBatch(self, self._session())
        reqs, plist = as_lists(requests, params)
        if reqs:
            batch.add(reqs, plist)
        return batch

    # -- whole completions -------------------------------------------------------------------------------
    @_inference
    def generate(
        self,
        requests: Request | Sequence[Request],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        use_tqdm: bool | Callable[..., Any] = False,
    ) -> list[RequestOutput]:
        """Complete every request; outputs in input order, completions in index order. `use_tqdm`: a bar of
        completed sequences (True), or the factory that makes it (vLLM's semantics)."""
        reqs, plist = as_lists(requests, params)
        plist = list(plist)  # pieces of split requests get their seed written here, not in the caller's list
        self.usage.num_calls += 1
        outputs = [RequestOutput(completions=[Completion() for _ in range(p.n)]) for p in plist]
        encoded = self.start().encode(reqs, plist)  # validate everything before generating anything
        # Longest prompts first: later (shorter) prompts then fit left of the shared write column.
        queue = deque(sorted(range(len(reqs)), key=lambda i: -len(encoded[i])))
        bar = _progress(sum(p.n for p in plist), use_tqdm)
        batch, origin = None, []  # origin[k]: input index of the k-th request (or piece of one) added to `batch`
        admitted = [0] * len(reqs)  # samples of each request already given rows
        t0, tokens0 = time.perf_counter(), self.usage.num_generated_tokens
        while queue or (batch is not None and len(batch)):
            if batch is None or len(batch) == 0:
                batch, origin = self._generate_batch(encoded, plist), []
            if batch.supports_add and queue:
                pieces = _admissions(queue, [p.n for p in plist], admitted, rows=len(batch), max_rows=self.max_batch_size)
                for first in sorted({f for _, f, _ in pieces}):  # one add (one prefill) per first sample index
                    group = [(i, c) for i, f, c in pieces if f == first]
                    for i, _ in group:  # a split request's pieces share one seed, as if it came whole
                        if plist[i].seed is None:
                            plist[i] = replace(plist[i], seed=self.next_seed())
                    batch.add([reqs[i] for i, _ in group], [replace(plist[i], n=c) for i, c in group], first_index=first, encoded=[encoded[i] for i, _ in group])
                    origin.extend(i for i, _ in group)
            batch.advance(ADVANCE_CHUNK)
            finished = [b for b in range(len(batch)) if batch.is_finished(b)]
            for b in finished:
                row = batch.rows[b]
                i = origin[row.request_index]
                outputs[i].completions[row.index] = batch.completion(b, index=row.index)
                outputs[i].num_prompt_tokens = row.num_prompt_tokens
            if finished:
                batch.reorder(_swap_remove(len(batch), set(finished)))
                if bar is not None:
                    bar.update(len(finished))
                    elapsed = time.perf_counter() - t0
                    bar.set_postfix(tok_s=f"{(self.usage.num_generated_tokens - tokens0) / max(elapsed, 1e-9):.0f}")
        if bar is not None:
            bar.close()
        if batch is not None:
            self._spare = batch  # its buffers serve the next call: fresh memory faults in at ~1 s per GB here
        return outputs

    def _generate_batch(self, encoded: list[list[int]], plist: list[SamplingParams]) -> TransformersLiveBatch:
        """An empty batch for `generate` with room for its rows and for its longest prompt plus answer, so the
        cache is not reallocated (and copied) as rows are admitted and columns added; the previous call's
        batch when there is one."""
        batch, self._spare = self._spare, None
        if batch is None or len(batch):
            batch = self.start()
        else:
            batch.reset()
        if batch.is_continuous:
            rows = min(self.max_batch_size, sum(p.n for p in plist))
            cols = max(len(e) for e in encoded) + max(p.max_tokens for p in plist) + ADVANCE_CHUNK
            batch.reserve_capacity(rows, cols)
        return batch

    # -- memory, for strategies that size batches by it (`KVCacheEngine`) ---------------------------------
    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes one token of one row takes in the KV cache: keys and values of every layer."""
        config = self.model.config
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return 2 * config.num_hidden_layers * kv_heads * head_dim * self.model.dtype.itemsize

    def free_memory(self) -> int:
        """Free bytes on the engine's device: `cuda.mem_get_info` on a GPU, available physical pages on a CPU."""
        if self.device.type == "cuda":
            return torch.cuda.mem_get_info(self.device)[0]
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")

    # -- model access for scorers ------------------------------------------------------------------------
    def encode(self, request: Request) -> list[int]:
        """Token ids the model would see for `request` (prompt followed by the partial answer)."""
        prompt, partial = encode_request(self.tokenizer, request)
        return prompt + partial

    @_inference
    def hidden_states(self, sequences: Sequence[Sequence[int]], *, batch_size: int = 16) -> list[torch.Tensor]:
        """Final-norm hidden states (T_i, C) of each token sequence, batched with left padding."""
        out: list[torch.Tensor] = [None] * len(sequences)  # type: ignore[list-item]
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))  # similar lengths pad less
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            tokens, positions, valid = _left_pad([list(sequences[i]) for i in idx], self.device)
            if self.runner is not None:
                h = self.runner.hidden_states(tokens, positions, valid)
            else:
                res = self.model(input_ids=tokens, attention_mask=valid.long(), position_ids=positions, output_hidden_states=True)
                h = res.hidden_states[-1]
            self.usage.num_prefill_tokens += int(valid.sum())
            self.usage.num_forward_passes += 1
            for j, i in enumerate(idx):
                n = len(sequences[i])
                out[i] = h[j, h.shape[1] - n :].float()
        return out

    @_inference
    def next_token_logprobs(self, sequences: Sequence[Sequence[int]], *, batch_size: int = 16) -> torch.Tensor:
        """Log-probabilities (N, V) of the token following each sequence."""
        hidden = self.hidden_states(sequences, batch_size=batch_size)
        last = torch.stack([h[-1] for h in hidden]).to(self.model.dtype)
        if self.runner is not None:
            logits = self.runner.logits(last)
        else:
            logits = self.model.get_output_embeddings()(last).float()
        return torch.log_softmax(logits, -1)


class _InferenceLiveBatch(TransformersLiveBatch):
    """Every public operation runs under `torch.inference_mode()`."""

    add = _inference(TransformersLiveBatch.add)
    advance = _inference(TransformersLiveBatch.advance)
    reorder = _inference(TransformersLiveBatch.reorder)
    step = _inference(TransformersLiveBatch.step)


def _admissions(queue: deque, sizes: list[int], admitted: list[int], *, rows: int, max_rows: int) -> list[tuple[int, int, int]]:
    """(request, first sample index, samples) to add to a batch of `rows` rows, from the front of `queue`
    (popped when all its samples have rows; `admitted` updated). A request that does not fit the free rows is
    split: its samples are independent rows, so a piece starts while the batch still decodes, instead of the
    batch draining to its longest row before a request of n = max_rows fits (the tail of a 64-sample
    request is one row decoding alone for hundreds of tokens). A piece costs a prefill of the prompt, so one
    smaller than a quarter of the batch waits for more rows to free, unless the batch is empty."""
    out = []
    free = max_rows - rows
    while queue and free > 0:
        i = queue[0]
        left = sizes[i] - admitted[i]
        take = min(left, free)
        if take < left and take < max(1, max_rows // 4) and rows + sum(c for *_, c in out) > 0:
            break
        out.append((i, admitted[i], take))
        admitted[i] += take
        free -= take
        if admitted[i] == sizes[i]:
            queue.popleft()
    return out


def _swap_remove(n: int, drop: set[int]) -> list[int]:
    """Row order that removes `drop` by moving tail rows into the holes (fewest cache copies)."""
    keep = n - len(drop)
    order = list(range(keep))
    movers = [b for b in range(keep, n) if b not in drop]
    holes = [b for b in range(keep) if b in drop]
    for hole, mover in zip(holes, movers):
        order[hole] = mover
    return order


def _progress(total: int, use_tqdm: bool | Callable[..., Any]):
    if not use_tqdm:
        return None
    if callable(use_tqdm):
        make = use_tqdm
    else:
        from tqdm.auto import tqdm as make

    return make(total=total, desc="generate", unit="seq", dynamic_ncols=True)
