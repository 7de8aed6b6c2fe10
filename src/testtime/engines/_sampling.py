"""Sampling as pure functions of logits: one token and its log-probability per row.

Inverse-CDF sampling (one uniform per row, a cumsum and a searchsorted) replaces `torch.multinomial`: on the
2-core dev machine, batch 32 x 49152 vocab, multinomial costs 42 ms per step, `exponential_`-based Gumbel
tricks 33-37 ms, inverse CDF 1.6 ms. The uniforms come from each row's own seeded `random.Random`, so a row's
samples do not depend on which other rows share its batch, and forked rows get fresh streams.

top-k / top-p work on a `topk` window instead of a full vocabulary sort (a full sort costs 60 ms per step
here); rows whose nucleus does not fit in the window fall back to the full sort, so the result is exact.
"""

from __future__ import annotations

import hashlib
import struct

import torch

__all__ = ["sample", "derive_seed"]

_WINDOW = 1024  # candidates considered for top-k / top-p before falling back to a full sort


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across runs and platforms (unlike `hash`)."""
    data = struct.pack(f"<{len(parts)}q", *[p & 0x7FFFFFFFFFFFFFFF for p in parts])
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


def _inverse_cdf(weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index drawn with probability proportional to `weights` (B, K) for uniforms `u` (B,) in [0, 1)."""
    cdf = weights.cumsum(-1)
    # right=True: the first index whose cdf exceeds u * total, so zero-weight entries are never picked.
    idx = torch.searchsorted(cdf, (u[:, None] * cdf[:, -1:]).to(cdf.dtype), right=True)
    return idx.clamp_max(weights.shape[-1] - 1)[:, 0]


def _filtered(probs: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, u: torch.Tensor, window: int) -> torch.Tensor:
    """Sample from the top-k / nucleus of each row, looking at the `window` most likely tokens."""
    vals, idx = probs.topk(window, dim=-1)  # (B, K), sorted descending
    rank = torch.arange(window, device=probs.device)
    keep = torch.ones_like(vals, dtype=torch.bool)
    keep &= (top_k[:, None] == 0) | (rank[None] < top_k[:, None])
    # Nucleus (Holtzman et al. 2020): keep a token if the mass strictly before it is below top_p, so the
    # most likely token is always kept and the kept set is the smallest one reaching top_p.
    keep &= (vals.cumsum(-1) - vals) < top_p[:, None]
    choice = _inverse_cdf(vals * keep, u)
    return idx.gather(1, choice[:, None])[:, 0]


def sample(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    u: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row.

    Args:
        logits: (B, V) float32.
        temperature: (B,); 0 means greedy (argmax) for that row.
        top_k: (B,) int64; 0 disables.
        top_p: (B,); 1 disables.
        u: (B,) uniforms in [0, 1).

    Returns:
        tokens (B,) int64 and their log-probabilities (B,) under the unmodified model distribution.
    """
    B, V = logits.shape
    tokens = torch.empty(B, dtype=torch.long, device=logits.device)
    greedy = temperature == 0
    if bool(greedy.any()):
        tokens[greedy] = logits[greedy].argmax(-1)
    sampled = ~greedy
    if bool(sampled.any()):
        every = bool(sampled.all())  # the usual case: no (B, V) row copies
        rows = sampled.nonzero()[:, 0]
        z = logits if every else logits[rows]
        # Unnormalised softmax weights: inverse-CDF sampling scales by the total itself, so only top-p (which
        # compares cumulative mass with p) needs them normalised. Each (B, V) pass is ~3 ms at batch 64 here.
        w = (z - z.amax(-1, keepdim=True)).div_(temperature[rows, None]).exp_()
        k, p, uu = top_k[rows], top_p[rows], u[rows]
        filtered = (k > 0) | (p < 1)
        if not bool(filtered.any()):
            out = _inverse_cdf(w, uu)
        else:
            out = torch.empty(rows.shape[0], dtype=torch.long, device=logits.device)
            plain = ~filtered
            if bool(plain.any()):
                out[plain] = _inverse_cdf(w[plain], uu[plain])
            fw, fk, fpp, fu = w[filtered], k[filtered], p[filtered], uu[filtered]
            fp = fw.div_(fw.sum(-1, keepdim=True))
            window = min(V, max(_WINDOW, int(fk.max())))
            # A row needs the full sort only if its nucleus is wider than the window.
            if window < V and bool(((fk == 0) & (fp.topk(window, -1).values.sum(-1) < fpp)).any()):
                window = V
            out[filtered] = _filtered(fp, fk, fpp, fu, window)
        if every:
            tokens = out
        else:
            tokens[rows] = out
    logprobs = torch.log_softmax(logits, -1).gather(1, tokens[:, None])[:, 0]
    return tokens, logprobs
