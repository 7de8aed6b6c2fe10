"""The KV cache's own bookkeeping: growth keeps live content and drops dead row slots."""

from __future__ import annotations

import torch

from testtime.engines._kv_cache import KVCache


def _filled(rows: int, cols: int) -> KVCache:
    c = KVCache(num_layers=2, num_kv_heads=1, head_dim=2, num_rows=0, capacity=0, dtype=torch.float32, device=torch.device("cpu"))
    k = torch.arange(2 * rows * cols * 2, dtype=torch.float32).view(2, rows, 1, cols, 2)
    c.append_rows(k, -k, torch.ones(rows, cols, dtype=torch.bool))
    return c


def test_growing_columns_keeps_live_rows_and_drops_dead_slots():
    c = _filled(rows=8, cols=5)
    assert c.row_capacity >= 8 and c.num_rows == 8
    c.reorder(torch.tensor([6, 1]))  # keep two rows: 6 slots are dead now
    before_k = c.k[:, :2, :, :5].clone()
    c.ensure_capacity(cols=40)
    assert c.capacity >= 40 and c.row_capacity == 3  # 2 live rows + half again, not the old 8
    assert torch.equal(c.k[:, :2, :, :5], before_k) and torch.equal(c.v[:, :2, :, :5], -before_k)
    assert c.valid[:2, :5].all() and not c.valid[:, 5:].any() and c.col == 5
    c.ensure_capacity(rows=6)  # growing rows again works from the smaller buffer
    assert c.row_capacity >= 6 and torch.equal(c.k[:, :2, :, :5], before_k)


def test_prompt_longer_than_history_shifts_content_right():
    c = _filled(rows=2, cols=3)
    old = c.k[:, :2, :, :3].clone()
    k = torch.ones(2, 1, 1, 6, 2)
    c.append_rows(k, k, torch.ones(1, 6, dtype=torch.bool))
    assert c.col == 6 and c.num_rows == 3
    assert torch.equal(c.k[:, :2, :, 3:6], old) and not c.valid[:2, :3].any()
    assert torch.equal(c.k[:, 2, :, :6], k[:, 0])


def test_a_shift_past_capacity_leaves_headroom_so_the_next_one_is_in_place():
    """Growing exactly by the shift would reallocate again at the next slightly longer prompt (each reallocation
    writes gigabytes of fresh memory at serving sizes); growing by half keeps the next shift inside the buffer."""
    c = _filled(rows=2, cols=40)
    assert c.capacity == 41
    k = torch.ones(2, 1, 1, 50, 2)
    c.append_rows(k, k, torch.ones(1, 50, dtype=torch.bool))  # shift 10 past a full buffer
    assert c.col == 50 and c.capacity == 61  # 41 + 20, not 51
    old = c.k[:, :3, :, :50].clone()
    k = torch.ones(2, 1, 1, 55, 2)
    c.append_rows(k, k, torch.ones(1, 55, dtype=torch.bool))  # shift 5 more: fits
    assert c.col == 55 and c.capacity == 61 and torch.equal(c.k[:, :3, :, 5:55], old)
