"""Keys and values of prompt prefixes computed before, reused by later prompts that start the same way
(automatic prefix caching, as in vLLM and SGLang's RadixAttention).

Why: requests of one task share most of their prompt. The arith prompts are a system prompt, few-shot turns of
the problem's level and the question; over the 24 test prompts the serving benchmark sends, 10,541 of 14,182
prompt tokens repeat an earlier prompt's prefix, and on this CPU a prompt's prefill costs about as much as
decoding 64 tokens for 4 samples (BENCHMARKS.md, issue 17). With this cache a prompt computes only the tokens
after its longest cached prefix, attending to the cached keys and values (`LlamaRunner.prefill(past=)`).

Layout: a prompt is cut into blocks of `block_tokens`; a block is stored under (its parent block's id, its
tokens), so a key names one exact token prefix with no hashing (no collision can hand a prompt another prompt's
keys). Only whole blocks are cached. Eviction is least recently used, by tokens held: a lookup or insert touches
a chain from its last block back to its first, so a parent is always newer than its children and the oldest
block is always a leaf (evicting it never strands a descendant).

Exactness: every prompt is computed on the same grid of blocks (`PendingPrefill`), so a block's keys and values
are bit-identical whether the blocks before it were computed or read from here; a seeded request answers the same
whatever ran before it (tests/test_prefix_cache.py checks `torch.equal` against a cold prefill). Against the
engine without a cache (one pass per prompt) they agree to rounding, as chunked prefill does.

The cache belongs to one model (its runner): the weights never change under it. It is not thread-safe; the
engine's batches are driven from one thread.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._errors import ValidationError

__all__ = ["PrefixCache", "BLOCK_TOKENS", "DEFAULT_PREFIX_CACHE_TOKENS"]

BLOCK_TOKENS = 128
"""Tokens per cached block: a prompt reuses its prefix up to the last whole block it shares with a cached one,
and is prefilled one block per forward (`PendingPrefill`), so cached and computed blocks are bit-identical.
128 on the 2-core CPU: a 416-token prompt prefilled in 128-token forwards takes 1.16x one pass (1.81 vs
1.56 s), a 1,016-token one 1.00x; 64-token forwards cost 1.34x and 1.06x, and on the arith prompts both
sizes reuse the same prefixes (each level's few-shot prefix is 388-935 tokens, whole blocks to 384-896)."""

DEFAULT_PREFIX_CACHE_TOKENS = 8192
"""Prompt tokens the in-process engine keeps by default: ~380 MB for the embedded model in fp32 (46 KB per
token), room for every arith level's few-shot prefix several times over."""


@dataclass
class _Block:
    id: int
    parent: tuple | None  # the parent block's key; None for a first block
    k: torch.Tensor  # (L, KVH, block_tokens, D)
    v: torch.Tensor
    num_children: int = 0


class PrefixCache:
    """Cached keys and values of prompt prefixes, in blocks of `block_tokens`, at most `max_tokens` in all."""

    def __init__(self, max_tokens: int = DEFAULT_PREFIX_CACHE_TOKENS, *, block_tokens: int = BLOCK_TOKENS) -> None:
        if not isinstance(block_tokens, int) or isinstance(block_tokens, bool) or block_tokens < 1:
            raise ValidationError(f"`block_tokens` must be an integer >= 1, got {block_tokens!r}.", parameter="block_tokens", value=block_tokens)
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < block_tokens:
            raise ValidationError(
                f"`max_tokens` of the prefix cache must be an integer >= its block size ({block_tokens}), got {max_tokens!r}.",
                parameter="max_tokens",
                value=max_tokens,
            )
        self.max_tokens = max_tokens
        self.block_tokens = block_tokens
        self._blocks: OrderedDict[tuple, _Block] = OrderedDict()  # least recently used first
        self._next_id = 0
        self.num_hit_tokens = 0  # prompt tokens served from the cache, over all lookups
        self.num_lookup_tokens = 0  # prompt tokens looked up

    def __len__(self) -> int:
        return len(self._blocks)

    @property
    def num_tokens(self) -> int:
        return len(self._blocks) * self.block_tokens

    def clear(self) -> None:
        self._blocks.clear()

    def _chain(self, tokens: Sequence[int]) -> list[tuple]:
        """Keys of the cached blocks that `tokens` starts with, first block first."""
        keys: list[tuple] = []
        parent_id = -1
        B = self.block_tokens
        for a in range(0, len(tokens) - B + 1, B):
            key = (parent_id, tuple(tokens[a : a + B]))
            block = self._blocks.get(key)
            if block is None:
                break
            keys.append(key)
            parent_id = block.id
        return keys

    def _touch(self, keys: list[tuple]) -> None:
        for key in reversed(keys):  # last block first: parents end up newer than their children
            self._blocks.move_to_end(key)

    def num_cached(self, tokens: Sequence[int]) -> int:
        """How many of `tokens` a lookup would serve from the cache now (nothing is touched or counted)."""
        return len(self._chain(tokens)) * self.block_tokens

    def lookup(self, tokens: Sequence[int]) -> tuple[int, torch.Tensor | None, torch.Tensor | None]:
        """(m, keys, values (L, 1, KVH, m, D)) of the longest cached prefix of `tokens`, whole blocks only;
        (0, None, None) when the first block is not cached."""
        keys = self._chain(tokens)
        self.num_lookup_tokens += len(tokens)
        if not keys:
            return 0, None, None
        self._touch(keys)
        m = len(keys) * self.block_tokens
        self.num_hit_tokens += m
        blocks = [self._blocks[key] for key in keys]
        k = torch.cat([b.k for b in blocks], dim=2)[:, None]
        v = torch.cat([b.v for b in blocks], dim=2)[:, None]
        return m, k, v

    def insert(self, tokens: Sequence[int], k: torch.Tensor, v: torch.Tensor) -> None:
        """Cache the whole blocks of `tokens` whose keys and values (L, KVH, len(tokens), D) are given."""
        B = self.block_tokens
        if k.shape[2] != len(tokens) or v.shape[2] != len(tokens):
            raise ValueError(f"keys and values hold {k.shape[2]} tokens, the prompt {len(tokens)}")
        keys = self._chain(tokens)
        parent_id = self._blocks[keys[-1]].id if keys else -1
        parent_key = keys[-1] if keys else None
        for a in range(len(keys) * B, len(tokens) - B + 1, B):
            key = (parent_id, tuple(tokens[a : a + B]))
            # .clone(): a block must not keep the whole prompt's (or group's) tensor alive.
            block = _Block(id=self._next_id, parent=parent_key, k=k[:, :, a : a + B].clone(), v=v[:, :, a : a + B].clone())
            self._next_id += 1
            self._blocks[key] = block
            if parent_key is not None:
                self._blocks[parent_key].num_children += 1
            keys.append(key)
            parent_id, parent_key = block.id, key
        self._touch(keys)
        self._evict()

    def _evict(self) -> None:
        while self.num_tokens > self.max_tokens:
            key, block = self._blocks.popitem(last=False)
            # The oldest block is a leaf (see the module docstring); a block with children would strand them.
            if block.num_children:
                raise RuntimeError("prefix cache: the least recently used block has children (a bug in _touch)")
            if block.parent is not None:
                self._blocks[block.parent].num_children -= 1
