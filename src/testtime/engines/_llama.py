"""A native forward pass for Llama-family checkpoints (Llama 2/3, Mistral, Qwen2/2.5, Qwen3, SmolLM).

Why not call the transformers module? Profiling its decode step at batch 32 on the embedded model showed 43% of
the time in `torch.cat` (DynamicCache grows every step) and the GEMMs running at ~110 GFLOP/s. Here the weights
are taken from the loaded transformers model (so every loader, GGUF included, works), QKV and gate/up are fused
into one GEMM each and prepacked for oneDNN, and keys/values are written by column into a preallocated
`KVCache`. Logits match transformers to ~5e-5 (tests/test_engine_native.py). Models of other architectures use
`_hf_runner.HFRunner`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._kv_cache import KVCache
from ._linear import PackedLinear

__all__ = ["LlamaRunner"]

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


class _Layer:
    def __init__(self, hf_layer, *, num_heads: int, num_kv_heads: int, head_dim: int) -> None:
        a, mlp = hf_layer.self_attn, hf_layer.mlp
        wqkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
        bqkv = None if a.q_proj.bias is None else torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
        self.qkv = PackedLinear(wqkv, bqkv)
        self.o = PackedLinear(a.o_proj.weight, a.o_proj.bias)
        self.gate_up = PackedLinear(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]))
        self.down = PackedLinear(mlp.down_proj.weight)
        self.norm_attn = hf_layer.input_layernorm.weight.detach()
        self.norm_mlp = hf_layer.post_attention_layernorm.weight.detach()
        # Qwen3 normalizes q and k per head before RoPE.
        self.q_norm = a.q_norm.weight.detach() if hasattr(a, "q_norm") else None
        self.k_norm = a.k_norm.weight.detach() if hasattr(a, "k_norm") else None
        self.split = [num_heads * head_dim, num_kv_heads * head_dim, num_kv_heads * head_dim]


class LlamaRunner:
    """Prefill and single-token decode over a `KVCache`, for the architectures in SUPPORTED_MODEL_TYPES."""

    @staticmethod
    def supports(hf_model) -> bool:
        cfg = hf_model.config
        if getattr(cfg, "model_type", None) not in SUPPORTED_MODEL_TYPES:
            return False
        # Sliding-window attention is not implemented here; such models run through HFRunner.
        if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
            return cfg.sliding_window >= cfg.max_position_embeddings
        return hasattr(hf_model, "model") and hasattr(hf_model.model, "rotary_emb")

    def __init__(self, hf_model) -> None:
        cfg = hf_model.config
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = getattr(cfg, "num_key_value_heads", None) or self.num_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.num_heads
        self.group = self.num_heads // self.num_kv_heads
        self.eps = cfg.rms_norm_eps
        self.vocab_size = cfg.vocab_size
        self.max_len = cfg.max_position_embeddings
        base = hf_model.model
        self.embed = base.embed_tokens.weight.detach()
        self.norm = base.norm.weight.detach()
        self.lm_head = PackedLinear(hf_model.lm_head.weight)
        # Reuse transformers' inverse frequencies so every RoPE scaling type (llama3, yarn, ...) is right.
        self.inv_freq = base.rotary_emb.inv_freq.detach().float()
        self.rope_scale = float(getattr(base.rotary_emb, "attention_scaling", 1.0))
        self.layers = [
            _Layer(layer, num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, head_dim=self.head_dim)
            for layer in base.layers
        ]
        self.dtype = self.embed.dtype
        self.device = self.embed.device
        # Shared-prefix (cascade) decode attention needs the log-sum-exp of each part; the CPU kernel returns
        # it. Elsewhere each row reads its own copy, as before.
        self.cascade = self.device.type == "cpu"

    def new_cache(self, num_rows: int, capacity: int) -> KVCache:
        return KVCache(
            num_layers=len(self.layers),
            num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            num_rows=num_rows,
            capacity=capacity,
            dtype=self.dtype,
            device=self.device,
        )

    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), w, self.eps)

    def _rope_tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions[..., None].float() * self.inv_freq  # (B, T, D/2)
        emb = torch.cat((freqs, freqs), -1)
        cos = (emb.cos() * self.rope_scale).to(self.dtype)[:, None]  # (B, 1, T, D)
        sin = (emb.sin() * self.rope_scale).to(self.dtype)[:, None]
        return cos, sin

    @staticmethod
    def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, -1)
        return x * cos + torch.cat((-x2, x1), -1) * sin

    def _qkv(self, layer: _Layer, h: torch.Tensor, cos, sin):
        B, T, _ = h.shape
        q, k, v = layer.qkv(h).split(layer.split, -1)
        q = q.view(B, T, self.num_heads, self.head_dim)
        k = k.view(B, T, self.num_kv_heads, self.head_dim)
        if layer.q_norm is not None:
            q = self._rms(q, layer.q_norm)
            k = self._rms(k, layer.k_norm)
        q = self._rope(q.transpose(1, 2), cos, sin)  # (B, H, T, D)
        k = self._rope(k.transpose(1, 2), cos, sin)  # (B, KVH, T, D)
        v = v.view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        return q, k, v

    def _mlp(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        gate, up = layer.gate_up(self._rms(x, layer.norm_mlp)).chunk(2, -1)
        return x + layer.down(F.silu(gate) * up)

    def _full(self, tokens: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor, *, keep_kv: bool, past=None):
        """Causal pass over left-padded inputs (B, T); returns hidden states before the final norm and, if
        asked, per-layer keys and values (L, B, KVH, T, D).

        `past` (keys, values (L, B, KVH, Tp, D), validity (B, Tp)): earlier columns of the same rows, which
        every query also attends to (chunked prefill: a long prompt computed a slice of columns at a time).

        Pad queries attend to themselves so their rows stay finite (a fully masked softmax is NaN, and NaN
        values would leak through masked columns later).
        """
        B, T = tokens.shape
        x = self.embed[tokens]  # (B, T, C)
        cos, sin = self._rope_tables(positions)
        causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
        mask = (causal & valid[:, None, :]) | torch.eye(T, dtype=torch.bool, device=tokens.device)
        if past is not None:
            mask = torch.cat([past[2][:, None, :].expand(B, T, -1), mask], dim=2)  # (B, T, Tp + T)
        mask = mask[:, None]  # (B, 1, T, Tp + T)
        ks, vs = [], []
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, self._rms(x, layer.norm_attn), cos, sin)
            if keep_kv:
                ks.append(k)
                vs.append(v)
            if past is not None:
                k, v = torch.cat([past[0][i], k], 2), torch.cat([past[1][i], v], 2)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.group > 1)
            x = x + layer.o(o.transpose(1, 2).reshape(B, T, -1))
            x = self._mlp(layer, x)
        return x, ks, vs

    def prefill(self, tokens: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor, past=None):
        """Run left-padded prompts (B, T) (or their next columns after `past`, as in `_full`); return per-layer
        keys and values (L, B, KVH, T, D) to cache."""
        _, ks, vs = self._full(tokens, positions, valid, keep_kv=True, past=past)
        return torch.stack(ks), torch.stack(vs)

    def hidden_states(self, tokens: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states (B, T, C) of left-padded inputs (reward heads read them)."""
        x, _, _ = self._full(tokens, positions, valid, keep_kv=False)
        return self._rms(x, self.norm)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits (..., V) from final-norm hidden states."""
        return self.lm_head(hidden).float()

    def decode(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        capture: Sequence[int] = (),
        rows: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
        """Feed one token per row (B,) at column `cache.col`; return next-token logits, the final-norm hidden
        states they came from, and the residual stream after each layer in `capture` (transformers'
        `hidden_states` numbering: 0 is the embeddings, i the output of layer i < L; the final-norm state,
        number L, is the second return value). Reward heads on an inner layer read these without another pass.

        `rows` (indices, increasing) restricts the work to those rows: outputs are (len(rows), ...). Rows left
        out (paused mid-search, finished) cost no GEMM; attention runs on the contiguous runs of kept rows
        (views of the cache, no copy), so they cost no attention either unless the runs are too fragmented
        (then one call over all rows). Their column is masked, so what is written there is never read. The
        caller sets `cache.valid[:, cache.col]` (False for rows idle this step) and advances `cache.col`.

        Each run is cut further where its rows' histories start far apart, and each piece attends only from
        its own first valid column: rows of a short prompt, or admitted late into a long-running batch, do
        not read the masked columns left of them (on CPU decode attention is bound by reading K/V).

        Rows that share columns (copies of one forked row: a request's samples, a search's beams; the cache's
        share groups) read those columns once per group on CPU (`_cascade`): at 8 requests x 4 samples of
        ~700-token prompts this cut decode attention from ~90 to ~40 ms of a 32-row step (BENCHMARKS.md, issue 17).
        """
        B = cache.num_rows
        col = cache.col
        sub = rows is not None and rows.shape[0] < B
        active = rows.tolist() if sub else list(range(B))
        first = cache.live_valid()[:, : col + 1].int().argmax(dim=1).tolist()  # each row's first valid column
        row_runs = _runs(active) if sub else [(0, B)]
        runs = _windows(row_runs, first)
        groups = self._shared_groups(cache, active) if self.cascade else []
        if groups:  # grouped rows' own attention starts where their shared span ends
            own_first = list(first)
            for _, members, _, (_, hi) in groups:
                for r in members:
                    own_first[r] = hi
            own_runs = _windows(row_runs, own_first)
            if len(own_runs) <= MAX_ATTENTION_RUNS:
                runs = own_runs
            else:
                groups = []
        split = len(runs) <= MAX_ATTENTION_RUNS or len(runs) == 1
        x = self.embed[tokens[rows] if sub else tokens][:, None]  # (Ba, 1, C)
        cos, sin = self._rope_tables((positions[rows] if sub else positions)[:, None])
        valid = cache.live_valid()[:, None, None, : col + 1]  # (B, 1, 1, Tk)
        if groups:
            # The CPU kernel that returns log-sum-exp takes an additive mask only. A row's own part masks its
            # group's span (a window that starts further left for a neighbour must not count the span twice).
            span_mask = torch.zeros(valid.shape, dtype=self.dtype, device=self.device).masked_fill_(~valid, float("-inf"))
            own_mask = span_mask.clone()
            for _, members, _, (_, hi) in groups:
                own_mask[members, ..., :hi] = float("-inf")
        captured = {0: x[:, 0]} if 0 in capture else {}
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, self._rms(x, layer.norm_attn), cos, sin)
            if sub:
                cache.zero_column(i)  # idle rows' columns must hold finite values (uninitialised buffers)
                cache.k[i, rows, :, col] = k[:, :, 0]
                cache.v[i, rows, :, col] = v[:, :, 0]
            else:
                cache.k[i, :B, :, col] = k[:, :, 0]
                cache.v[i, :B, :, col] = v[:, :, 0]
            K, V = cache.layer(i)  # (B, KVH, Tk, D) views
            # One query token: fold the query heads of each KV group into the query-length axis, so grouped
            # attention needs no repeat of K/V: q (Ba, KVH, G, D) against K (Ba, KVH, Tk, D).
            qg = q.reshape(q.shape[0], self.num_kv_heads, self.group, self.head_dim)
            if groups:
                o = self._cascade(qg, K, V, own_mask, span_mask, runs, groups)
            elif split:
                outs, at = [], 0
                for s, e, lo in runs:
                    outs.append(F.scaled_dot_product_attention(qg[at : at + e - s], K[s:e, :, lo:], V[s:e, :, lo:], attn_mask=valid[s:e, ..., lo:]))
                    at += e - s
                o = outs[0] if len(outs) == 1 else torch.cat(outs)
            else:
                lo = min(first)
                full = qg.new_zeros(B, *qg.shape[1:]).index_copy_(0, rows, qg) if sub else qg
                o = F.scaled_dot_product_attention(full, K[:, :, lo:], V[:, :, lo:], attn_mask=valid[..., lo:])
                o = o[rows] if sub else o
            x = x + layer.o(o.reshape(x.shape[0], 1, -1))
            x = self._mlp(layer, x)
            if i + 1 in capture and i + 1 < len(self.layers):
                captured[i + 1] = x[:, 0]
        hidden = self._rms(x[:, 0], self.norm)
        return self.lm_head(hidden).float(), hidden, captured

    @staticmethod
    def _shared_groups(cache: KVCache, active: list[int]) -> list[tuple[torch.Tensor, list[int], int, tuple[int, int]]]:
        """Share groups with at least two rows in this step: (their positions among the active rows, their row
        indices, the row whose copy of the span is read, the span)."""
        at: dict[int, list[int]] = {}
        for i, r in enumerate(active):
            g = cache.share[r]
            if g >= 0:
                at.setdefault(g, []).append(i)
        out = []
        for g, pos in at.items():
            if len(pos) > 1:
                members = [active[i] for i in pos]
                out.append((torch.tensor(pos, device=cache.k.device), members, members[0], cache.spans[g]))
        return out

    def _cascade(self, qg, K, V, own_mask, span_mask, runs, groups) -> torch.Tensor:
        """Decode attention that reads each share group's span once for all its rows (cascade attention, as
        in Hydragen and FlashInfer): every row attends over its own columns (`runs`, which start after its
        group's span), each group's stacked queries attend over the span in one row's copy, and the two parts
        are merged by their log-sum-exps. Exact up to rounding."""
        _, KVH, G, D = qg.shape
        outs, lses, at = [], [], 0
        for s, e, lo in runs:
            o, lse = _attention_lse(qg[at : at + e - s], K[s:e, :, lo:], V[s:e, :, lo:], own_mask[s:e, ..., lo:])
            outs.append(o)
            lses.append(lse)
            at += e - s
        o_own = outs[0] if len(outs) == 1 else torch.cat(outs)
        lse_own = lses[0] if len(lses) == 1 else torch.cat(lses)
        o_span = torch.zeros_like(o_own)
        lse_span = torch.full_like(lse_own, float("-inf"))  # rows in no group: the merge keeps their own part
        for pos, members, rep, (lo, hi) in groups:
            n = len(members)
            qq = qg[pos].transpose(0, 1).reshape(1, KVH, n * G, D)
            o, lse = _attention_lse(qq, K[rep : rep + 1, :, lo:hi], V[rep : rep + 1, :, lo:hi], span_mask[rep : rep + 1, ..., lo:hi])
            o_span[pos] = o.view(KVH, n, G, D).transpose(0, 1)
            lse_span[pos] = lse.view(KVH, n, G).transpose(0, 1)
        lse = torch.logaddexp(lse_own, lse_span)
        w_own = torch.exp(lse_own - lse)[..., None]
        w_span = torch.exp(lse_span - lse)[..., None]
        return (o_own.float() * w_own + o_span.float() * w_span).to(qg.dtype)


MAX_ATTENTION_RUNS = 16
"""Attention over at most this many contiguous runs of active rows, one call each; more fragmented batches
make one call over every row (per-call overhead would eat what skipping idle rows saves)."""


WINDOW_SLACK = 64
"""Rows whose histories start at most this many columns apart share one attention call (reading a few masked
columns is cheaper than another call per layer)."""


def _attention_lse(q, k, v, additive_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output and its log-sum-exp per query, (B, H, Lq, D) and (B, H, Lq): the same CPU kernel
    `F.scaled_dot_product_attention` runs, through the entry point that also returns the log-sum-exp."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=additive_mask)


def _windows(runs: list[tuple[int, int]], first: list[int]) -> list[tuple[int, int, int]]:
    """Cut [start, end) runs of rows where their first valid columns spread more than WINDOW_SLACK apart;
    -> [start, end, first column to attend] pieces."""
    out: list[tuple[int, int, int]] = []
    for s, e in runs:
        lo = hi = first[s]
        begin = s
        for r in range(s + 1, e):
            f = first[r]
            if max(hi, f) - min(lo, f) > WINDOW_SLACK:
                out.append((begin, r, lo))
                begin, lo, hi = r, f, f
            else:
                lo, hi = min(lo, f), max(hi, f)
        out.append((begin, e, lo))
    return out


def _runs(rows: list[int]) -> list[tuple[int, int]]:
    """Increasing row indices -> maximal [start, end) runs of consecutive ones."""
    out: list[tuple[int, int]] = []
    for r in rows:
        if out and out[-1][1] == r:
            out[-1] = (out[-1][0], r + 1)
        else:
            out.append((r, r + 1))
    return out
