"""The model side of a live batch: rows of cached context that can be decoded, reordered and extended.

`NativeSession` runs `LlamaRunner` over a preallocated `KVCache` (fast path, Llama-family models).
`HFSession` runs any transformers causal LM with its own `DynamicCache` (every architecture, slower: that
cache grows by `torch.cat` each step), and cannot admit rows once started.

Both take prompts *without* their last token: the live batch feeds that token in the first decode step, so
every step is the same operation and nothing is computed for rows that are then dropped.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ._llama import LlamaRunner
from ._prefix_cache import PrefixCache

__all__ = ["NativeSession", "HFSession", "PendingPrefill", "cache_kwarg"]

PREFILL_TOKENS_PER_FORWARD = {"cpu": 1024}
"""Padded tokens per prefill forward, by device type (default 4096: bounds activation memory). On CPU big
forwards fall out of cache: 8 prompts of ~550 tokens prefilled at 295 tok/s in one forward, 455 tok/s one
prompt per forward (2 cores, fp32)."""


COMPACT_HOLE_FRACTION = 0.5
"""Compact the KV cache at the start of an advance once this share of its used columns are holes (idle steps
of paused rows, padding, dropped history): a compaction costs about two decode steps' worth of attention reads."""


@functools.cache
def _forward_takes_cache(forward) -> bool:
    return "cache" in inspect.signature(forward).parameters


def cache_kwarg(model) -> str:
    """The keyword a transformers model's forward takes its KV cache by: "cache" where the forward has it
    (transformers 5.x renamed it and warns, with a FutureWarning, that `past_key_values` goes in 5.40), else
    "past_key_values" (earlier 5.x releases)."""
    return "cache" if _forward_takes_cache(type(model).forward) else "past_key_values"


def _prefill_budget(device: torch.device) -> int:
    return PREFILL_TOKENS_PER_FORWARD.get(device.type, 4096)


def _left_pad(prompts: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, P) tokens, positions and validity for right-aligned prompts."""
    P = max((len(p) for p in prompts), default=0)
    tokens = torch.zeros(len(prompts), P, dtype=torch.long)
    positions = torch.zeros(len(prompts), P, dtype=torch.long)
    valid = torch.zeros(len(prompts), P, dtype=torch.bool)
    for i, p in enumerate(prompts):
        if p:
            tokens[i, P - len(p) :] = torch.tensor(p)
            positions[i, P - len(p) :] = torch.arange(len(p))
            valid[i, P - len(p) :] = True
    return tokens.to(device), positions.to(device), valid.to(device)


@dataclass
class _PromptGroup:
    """Left-padded prompts that share each forward (`members`: their indices among the pending prompts), how many
    of their columns are computed (or came from the prefix cache), and their keys and values so far
    (L, B, KVH, done, D)."""

    members: list[int]
    tokens: torch.Tensor
    positions: torch.Tensor
    valid: torch.Tensor
    done: int = 0
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    stored: bool = False  # its prompts are in the prefix cache

    @property
    def width(self) -> int:
        return self.tokens.shape[1]


class PendingPrefill:
    """Prompts being prefilled, a slice of columns at a time if asked (chunked prefill): a scheduler interleaves
    the slices with decode steps of the rows already running, so a long prompt does not stall them. Each slice
    attends to the columns before it; the keys and values are the whole prompts' (to rounding: the attention
    is split differently). Nothing enters the cache until `NativeSession.add_prefilled`.

    With a `PrefixCache`, each prompt is computed alone, one cache block per forward (columns [0, B), [B, 2B),
    ... of its own tokens), starting after its longest cached prefix, and its whole blocks go into the cache as
    soon as it is done (a later prompt of the same call can reuse them). Because every prompt is cut on the
    same grid, a block's keys and values do not depend on whether the blocks before it were computed now or
    read from the cache, or on how a scheduler sliced the prompt: a prompt prefilled cold, warm or in slices
    gives bit-identical keys and values, so a seeded request answers the same whatever ran before it."""

    def __init__(self, runner: LlamaRunner, prompts: list[list[int]], prefix_cache: PrefixCache | None = None) -> None:
        self.runner = runner
        self.prompts = prompts
        self.prefix_cache = prefix_cache
        self.num_prefilled = 0  # prompt tokens computed (not padding, not cached)
        self.num_computed = 0  # padded prompt tokens computed: what a scheduler's per-round budget counts
        self.num_forwards = 0
        self.num_cached = [0] * len(prompts)  # per prompt: leading tokens taken from the prefix cache
        self._budget = _prefill_budget(torch.device(runner.device))
        self._next = 0  # first prompt not in a group yet (groups take consecutive prompts, in order)
        self._groups: list[_PromptGroup] = []

    @property
    def done(self) -> bool:
        return self._next == len(self.prompts) and all(g.done >= g.width for g in self._groups)

    @property
    def num_tokens_left(self) -> int:
        """Padded tokens still to compute (prompts not started yet count whole, cached prefixes or not)."""
        started = sum(g.tokens.shape[0] * (g.width - g.done) for g in self._groups)
        return started + sum(len(p) for p in self.prompts[self._next :])

    def _form_group(self) -> _PromptGroup:
        """The next prompts' group: with a prefix cache one prompt, its cached prefix already done; without,
        consecutive prompts whose padded size stays within the forward budget."""
        i, end = self._next, self._next + 1
        if self.prefix_cache is None:
            width = len(self.prompts[i])
            while end < len(self.prompts) and max(width, len(self.prompts[end])) * (end - i + 1) <= self._budget:
                width, end = max(width, len(self.prompts[end])), end + 1
        self._next = end
        g = _PromptGroup(list(range(i, end)), *_left_pad(self.prompts[i:end], self.runner.device))
        if self.prefix_cache is not None:
            m, k, v = self.prefix_cache.lookup(self.prompts[i])
            if m:
                self.num_cached[i] = m
                g.done, g.k, g.v = m, k, v  # one prompt, no padding: its cached columns come first
        self._groups.append(g)
        return g

    def _current(self) -> _PromptGroup | None:
        """The group being computed, forming the next one when the last is done; None when everything is."""
        if self._groups and self._groups[-1].done < self._groups[-1].width:
            return self._groups[-1]
        while self._next < len(self.prompts):
            g = self._form_group()
            if g.done < g.width:
                return g
            self._store(g)  # wholly cached (or empty): nothing to compute
        return None

    def _store(self, g: _PromptGroup) -> None:
        """Put a finished prompt's whole blocks into the prefix cache."""
        if self.prefix_cache is None or g.stored or g.k is None:
            return
        g.stored = True
        self.prefix_cache.insert(self.prompts[g.members[0]], g.k[:, 0], g.v[:, 0])

    def _slice_end(self, g: _PromptGroup, left: int | None) -> int:
        """Where the next forward of `g` stops: one cache block with a prefix cache (the grid that makes cached
        and computed blocks identical); else `left` tokens' worth of columns (all when None), at least one."""
        if self.prefix_cache is not None:
            B = self.prefix_cache.block_tokens
            return min(g.width, (g.done // B + 1) * B)
        return g.width if left is None else min(g.width, g.done + max(1, left // g.tokens.shape[0]))

    def step(self, max_tokens: int | None = None) -> None:
        """Compute up to about `max_tokens` more padded prompt tokens (all of them if None; at least one column,
        or one cache block with a prefix cache)."""
        left = max_tokens
        while left is None or left > 0:
            g = self._current()
            if g is None:
                return
            while g.done < g.width and (left is None or left > 0):
                a, b = g.done, self._slice_end(g, left)
                past = None if g.k is None else (g.k, g.v, g.valid[:, :a])
                k, v = self.runner.prefill(g.tokens[:, a:b], g.positions[:, a:b], g.valid[:, a:b], past)
                g.k, g.v = (k, v) if g.k is None else (torch.cat([g.k, k], 3), torch.cat([g.v, v], 3))
                self.num_forwards += 1
                self.num_prefilled += int(g.valid[:, a:b].sum())
                computed = g.tokens.shape[0] * (b - a)
                self.num_computed += computed
                if left is not None:
                    left -= computed
                g.done = b
            if g.done >= g.width:
                self._store(g)

    def parts(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(keys, values (L, B, KVH, P, D), validity (B, P)) per group, in prompt order, as `KVCache.append_parts`
        takes them."""
        L, KVH, D = len(self.runner.layers), self.runner.num_kv_heads, self.runner.head_dim
        out = []
        for g in self._groups:
            k, v = g.k, g.v
            if k is None:  # empty prompts: nothing to compute
                k = v = torch.zeros(L, g.tokens.shape[0], KVH, 0, D, dtype=self.runner.dtype, device=self.runner.device)
            out.append((k, v, g.valid))
        return out


class NativeSession:
    supports_add = True

    def __init__(self, runner: LlamaRunner, prefix_cache: PrefixCache | None = None) -> None:
        self.runner = runner
        self.prefix_cache = prefix_cache
        self.cache = runner.new_cache(0, 0)
        self.num_prefilled = 0
        self.num_cached = 0  # prompt tokens taken from the prefix cache instead of computed
        self.num_forwards = 0

    @property
    def num_rows(self) -> int:
        return self.cache.num_rows

    def num_cached_tokens(self, prompt: list[int]) -> int:
        """Leading tokens of `prompt` the prefix cache holds now (0 without one)."""
        return self.prefix_cache.num_cached(prompt) if self.prefix_cache is not None else 0

    def start_prefill(self, prompts: list[list[int]]) -> PendingPrefill:
        return PendingPrefill(self.runner, prompts, self.prefix_cache)

    def add_rows(self, prompts: list[list[int]]) -> list[int]:
        """Prefill and append one row per prompt; returns the tokens of each taken from the prefix cache."""
        pending = self.start_prefill(prompts)
        pending.step()
        return self.add_prefilled(pending)

    def add_prefilled(self, pending: PendingPrefill) -> list[int]:
        """Append the rows of a finished `PendingPrefill`; returns the tokens of each prompt taken from the
        prefix cache."""
        if not pending.done:
            raise ValueError("add_prefilled needs a finished prefill; call step() until done")
        self.num_forwards += pending.num_forwards
        self.num_prefilled += pending.num_prefilled
        self.num_cached += sum(pending.num_cached)
        parts = pending.parts()
        if parts:  # appended together: the history moves at most once, for the longest prompt
            self.cache.append_parts(parts)
        return list(pending.num_cached)

    def reserve(self, steps: int) -> None:
        self.cache.ensure_capacity(cols=self.cache.col + steps)

    def reserve_capacity(self, rows: int, cols: int = 0) -> None:
        self.cache.min_rows = max(self.cache.min_rows, rows)
        self.cache.ensure_capacity(rows=rows, cols=cols)

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, active: torch.Tensor, capture: Sequence[int] = (), rows: torch.Tensor | None = None):
        """Logits (B, V), final-norm hidden states (B, C) and {layer: (B, C)} for the `capture` layers after
        feeding one token per row; with `rows` (the active rows' indices) only those rows, (len(rows), ...)."""
        self.cache.ensure_capacity(cols=self.cache.col + 1)
        self.cache.valid[: self.cache.num_rows, self.cache.col] = active
        out = self.runner.decode(tokens, positions, self.cache, capture, rows)
        self.cache.col += 1
        self.num_forwards += 1
        return out

    def reorder(self, rows: torch.Tensor) -> None:
        self.cache.reorder(rows)

    def maybe_compact(self) -> None:
        # Attention cost grows with the column count; squeeze holes once they are a large share of it.
        if self.cache.num_rows == 0 or (self.cache.col >= 64 and self.cache.hole_fraction() > COMPACT_HOLE_FRACTION):
            self.cache.compact()  # (an empty cache just starts its columns from zero)


class HFSession:
    supports_add = False

    def __init__(self, model) -> None:
        from transformers import DynamicCache

        self.model = model
        self.device = next(model.parameters()).device
        self.cache = DynamicCache(config=model.config)
        self.cache_kwarg = cache_kwarg(model)
        self.valid = torch.zeros(0, 0, dtype=torch.bool, device=self.device)
        self.num_prefilled = 0
        self.num_forwards = 0
        self._started = False

    @property
    def num_rows(self) -> int:
        return self.valid.shape[0]

    def num_cached_tokens(self, prompt: list[int]) -> int:
        return 0  # no prefix cache on this path

    def add_rows(self, prompts: list[list[int]]) -> list[int]:
        if self._started:
            raise NotImplementedError("HFSession cannot admit rows after the first prefill")
        self._started = True
        tokens, positions, valid = _left_pad(prompts, self.device)
        if tokens.shape[1]:
            self.model(
                input_ids=tokens,
                attention_mask=valid.long(),
                position_ids=positions,
                use_cache=True,
                **{self.cache_kwarg: self.cache},
            )
            self.num_forwards += 1
            self.num_prefilled += int(valid.sum())
        self.valid = valid
        return [0] * len(prompts)  # no prefix cache on this path

    def reserve(self, steps: int) -> None:
        pass  # DynamicCache grows on its own

    def reserve_capacity(self, rows: int, cols: int = 0) -> None:
        pass  # DynamicCache grows on its own

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, active: torch.Tensor, capture: Sequence[int] = (), rows: torch.Tensor | None = None):
        self.valid = torch.cat([self.valid, active[:, None]], 1)
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=self.valid.long(),
            position_ids=positions[:, None],
            use_cache=True,
            output_hidden_states=True,
            **{self.cache_kwarg: self.cache},
        )
        self.num_forwards += 1
        hs = out.hidden_states  # L + 1 entries; the last is after the final norm
        pick = slice(None) if rows is None else rows  # every row is computed here; return the asked ones
        return out.logits[pick, -1].float(), hs[-1][pick, -1], {i: hs[i][pick, -1] for i in capture}

    def reorder(self, rows: torch.Tensor) -> None:
        if self.cache.get_seq_length() > 0:
            self.cache.batch_select_indices(rows)
        self.valid = self.valid.index_select(0, rows)

    def maybe_compact(self) -> None:
        pass
