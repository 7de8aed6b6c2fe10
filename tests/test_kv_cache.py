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


def test_chunks_appended_together_shift_the_history_once_and_zero_each_ones_left_columns(monkeypatch):
    """Prefill chunks of different widths go in with one shift (for the widest); a narrower chunk's rows are
    right-aligned at `col` and the columns left of their prompt are zeros (the buffers start as NaN here)."""
    from testtime.engines import _kv_cache

    monkeypatch.setattr(_kv_cache, "_uninitialised", lambda like, shape: like.new_full(shape, float("nan")))
    c = _filled(rows=2, cols=3)
    c.ensure_capacity(cols=64)
    old = c.k[:, :2, :, :3].clone()
    shifts = []
    real = KVCache._shift_in_place
    monkeypatch.setattr(KVCache, "_shift_in_place", lambda self, s: (shifts.append(s), real(self, s)))
    narrow, wide = torch.full((2, 2, 1, 4, 2), 2.0), torch.full((2, 1, 1, 7, 2), 3.0)
    c.append_parts([(narrow, -narrow, torch.ones(2, 4, dtype=torch.bool)), (wide, -wide, torch.ones(1, 7, dtype=torch.bool))])
    assert shifts == [4] and c.col == 7 and c.num_rows == 5
    assert torch.equal(c.k[:, :2, :, 4:7], old) and not c.valid[:2, :4].any() and c.valid[:2, 4:7].all()
    assert torch.equal(c.k[:, 2:4, :, 3:7], narrow) and torch.equal(c.v[:, 2:4, :, 3:7], -narrow)
    assert torch.equal(c.k[:, 2:4, :, :3], torch.zeros(2, 2, 1, 3, 2)) and not c.valid[2:4, :3].any()
    assert torch.equal(c.k[:, 4, :, :7], wide[:, 0]) and c.valid[4, :7].all()


def test_reorder_copies_forked_rows_and_survives_overlapping_sources():
    """New row i takes old row rows[i]'s keys, values and mask, even when a source slot is overwritten by an
    earlier destination (a cycle)."""
    c = _filled(rows=3, cols=4)
    k, v, valid = c.k[:, :3, :, :4].clone(), c.v[:, :3, :, :4].clone(), c.valid[:3, :4].clone()
    valid_mod = valid.clone()
    c.valid[1, 0] = False
    valid_mod[1, 0] = False
    order = [2, 0, 1, 1]
    c.reorder(torch.tensor(order))
    for i, r in enumerate(order):
        assert torch.equal(c.k[:, i, :, :4], k[:, r]) and torch.equal(c.v[:, i, :, :4], v[:, r])
        assert torch.equal(c.valid[i, :4], valid_mod[r])
