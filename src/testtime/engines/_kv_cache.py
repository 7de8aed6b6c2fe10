"""A preallocated key/value cache for a batch of rows that share write columns.

Layout: keys and values are (L, R, KVH, C, D) buffers with room for R rows and C columns; the first
`num_rows` row slots are live. Every row writes its next token at the same column `col`, and a (R, C) `valid`
mask says which columns hold a row's real tokens. Left padding, steps a row sat idle, and rows admitted later
all leave invalid columns ("holes") that attention masks out. Rotary positions are tracked per row, not per
column, so moving a row's columns never changes what it attends to.

Buffers are allocated uninitialised: zero-filling gigabytes faults in every page up front (seconds on CPU, most
of a reallocation's cost), and nothing needs it. The invariant that makes that safe: every live row's columns
left of `col` have been written (prefill, a decode step, or an explicit zero for a row idle that step, see
`zero_column`), so attention only ever reads finite values, masked or not.

Row surgery (drop, duplicate, permute) is one `reorder(rows)`, applied to every layer at once; it copies only
the slots whose content changes (at 64 rows x 500 tokens the embedded model's cache is ~1.5 GB, so a full copy
per admission would cost several decode steps). Nothing is re-prefilled. `compact()` squeezes out holes.

Shared prefixes: when `reorder` duplicates a row (a request's n samples are one prefilled row forked n ways; a
search forks a beam), the copies hold identical keys, values and masks in every column written so far. The cache
records that as a share group with its column span (`share`, `spans`), so decode attention can read the span
once for all the group's rows (`LlamaRunner.decode`) instead of once per row. A row belongs to at most one group,
its newest: forking a member again starts a new group whose span is longer. Spans move with shifts; `compact`
moves rows' columns differently and ends every group.
"""

from __future__ import annotations

from collections import Counter

import torch

__all__ = ["KVCache", "MIN_SHARED_COLUMNS"]

MIN_SHARED_COLUMNS = 32
"""A fork starts a share group only when its rows share at least this many columns: below that, the extra
attention call per group costs more than the reads it saves."""


class KVCache:
    def __init__(
        self,
        *,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        num_rows: int,
        capacity: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (num_layers, num_rows, num_kv_heads, capacity, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # (L, R, KVH, C, D)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.valid = torch.zeros(num_rows, capacity, dtype=torch.bool, device=device)  # (R, C)
        self.num_rows = num_rows
        self.col = 0  # next column to write, shared by all rows
        self.min_rows = 0  # row slots a reallocation keeps at least (`reserve_rows`: a scheduler's batch size)
        self.share: list[int] = [-1] * num_rows  # per live row: its share group, -1 for none
        self.spans: dict[int, tuple[int, int]] = {}  # share group -> [lo, hi) columns its rows hold identically
        self._groups_made = 0

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    @property
    def row_capacity(self) -> int:
        return self.k.shape[1]

    def nbytes_per_token(self) -> int:
        """Bytes one row spends on one cached token (keys and values, all layers)."""
        L, _, KVH, _, D = self.k.shape
        return 2 * L * KVH * D * self.k.element_size()

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Live keys and values of layer i up to and including column `col`: (B, KVH, col + 1, D) views."""
        B = self.num_rows
        return self.k[i, :B, :, : self.col + 1], self.v[i, :B, :, : self.col + 1]

    def live_valid(self) -> torch.Tensor:
        return self.valid[: self.num_rows]

    def _resize(self, rows: int, cols: int, shift: int = 0) -> None:
        """Reallocate to (rows, cols) capacity, moving content `shift` columns to the right. Only live rows and
        written columns are copied: after rejections most row slots of a big batch are dead, and copying them
        (or padding the whole buffer) costs seconds at hundreds of rows."""
        L, _, KVH, _, D = self.k.shape
        B, c = self.num_rows, self.col
        k = _uninitialised(self.k, (L, rows, KVH, cols, D))
        v = _uninitialised(self.v, (L, rows, KVH, cols, D))
        valid = self.valid.new_zeros(rows, cols)
        k[:, :B, :, :shift] = 0
        v[:, :B, :, :shift] = 0
        k[:, :B, :, shift : shift + c] = self.k[:, :B, :, :c]
        v[:, :B, :, shift : shift + c] = self.v[:, :B, :, :c]
        valid[:B, shift : shift + c] = self.valid[:B, :c]
        self.k, self.v, self.valid = k, v, valid
        self.col += shift
        self._shift_spans(shift)

    def _shift_spans(self, shift: int) -> None:
        if shift:
            self.spans = {g: (lo + shift, hi + shift) for g, (lo, hi) in self.spans.items()}

    def ensure_capacity(self, cols: int = 0, rows: int = 0) -> None:
        """Room for `cols` columns and `rows` rows, growing by at least half to amortize the copy; a reallocation
        keeps at most half again the live rows' slots (dead slots left by dropped rows are not carried)."""
        C, R = self.capacity, self.row_capacity
        if cols > C or rows > R:
            new_c = max(cols, C + C // 2) if cols > C else C
            live = self.num_rows + self.num_rows // 2
            new_r = max(rows, R + R // 2) if rows > R else max(min(R, max(live, self.min_rows)), rows, 1)
            self._resize(new_r, new_c)

    def reorder(self, rows: torch.Tensor) -> None:
        """New row i becomes old row rows[i]; only slots whose content changes are copied."""
        n = rows.shape[0]
        self.ensure_capacity(rows=n)
        slots = torch.arange(n, device=rows.device)
        moved = (rows != slots).nonzero()[:, 0]
        if moved.numel():
            src = rows[moved]
            # The right-hand side is gathered before assignment, so overlapping sources are safe.
            # Columns past `col` hold nothing yet, so they are not copied.
            # One layer at a time: the gathered temporary stays small enough for the allocator to reuse, where
            # one over all layers is fresh memory (hundreds of MB) faulted in at every fork.
            c = self.col
            for i in range(self.k.shape[0]):
                self.k[i, moved, :, :c] = self.k[i, src, :, :c]
                self.v[i, moved, :, :c] = self.v[i, src, :, :c]
            self.valid[moved, :c] = self.valid[src, :c]
        self.num_rows = n
        self._regroup(rows.tolist())

    def _regroup(self, rows: list[int]) -> None:
        """Share groups after `reorder(rows)`: the copies of a row taken more than once form a new group over
        its columns [first valid, col); every other row keeps its group."""
        c = self.col
        forked = [r for r, k in Counter(rows).items() if k > 1]
        new_group: dict[int, int] = {}
        old_share = self.share
        if forked and c:
            # The copies already sit in new slots; any one of them has the source's columns.
            slot = {}
            for i, r in enumerate(rows):
                slot.setdefault(r, i)
            v = self.valid[[slot[r] for r in forked], :c]
            has = v.any(1).tolist()
            first = v.int().argmax(1).tolist()
            for r, h, lo in zip(forked, has, first, strict=True):
                if h and c - lo >= MIN_SHARED_COLUMNS:
                    new_group[r] = self._groups_made
                    self.spans[self._groups_made] = (lo, c)
                    self._groups_made += 1
        self.share = [new_group.get(r, old_share[r]) for r in rows]
        live = set(self.share)
        self.spans = {g: span for g, span in self.spans.items() if g in live}

    def append_rows(self, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor) -> None:
        """Add rows whose prefilled keys/values (L, B_new, KVH, P, D) end right before column `col`."""
        self.append_parts([(k, v, valid)])

    def append_parts(self, parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
        """Add the rows of several prefill chunks (each (k, v, valid) as in `append_rows`, their own widths), in
        order, with at most one shift of the history for all of them."""
        P = max(k.shape[3] for k, _, _ in parts)
        B_new = sum(k.shape[1] for k, _, _ in parts)
        if P > self.col:  # a prompt longer than the history so far: make room on the left
            shift = P - self.col
            if self.num_rows == 0:  # nothing to move
                self.col = 0
                self.ensure_capacity(cols=P + 1)
                self.col = P
            elif self.col + shift < self.capacity:  # move the history right inside the buffers: no reallocation
                self._shift_in_place(shift)
            else:  # grow by half as well: the next longer prompt or the decode steps to come then fit in place
                self._resize(self.row_capacity, max(self.col + shift + 1, self.capacity + self.capacity // 2), shift=shift)
        self.ensure_capacity(cols=self.col + 1, rows=self.num_rows + B_new)
        start = self.num_rows
        for k, v, valid in parts:
            n, w = k.shape[1], k.shape[3]
            rows = slice(start, start + n)
            # Columns from `col` on are written by the decode steps to come; only the history left of the
            # prompt is zeroed.
            self.k[:, rows, :, : self.col - w] = 0
            self.v[:, rows, :, : self.col - w] = 0
            self.valid[rows] = False
            if w:
                self.k[:, rows, :, self.col - w : self.col] = k
                self.v[:, rows, :, self.col - w : self.col] = v
                self.valid[rows, self.col - w : self.col] = valid
            start += n
        self.num_rows += B_new
        self.share = self.share[: self.num_rows - B_new] + [-1] * B_new

    def _shift_in_place(self, shift: int) -> None:
        """Move every live row's columns [0, col) right by `shift`, through one layer-sized temporary reused
        for every layer (a temporary of the whole history is fresh memory: ~1 s per GB to fault in here)."""
        B, c = self.num_rows, self.col
        tmp = self.k.new_empty(self.k[0, :B, :, :c].shape)
        for buf in (self.k, self.v):
            for i in range(buf.shape[0]):
                tmp.copy_(buf[i, :B, :, :c])
                buf[i, :B, :, shift : shift + c] = tmp
        self.valid[:B, shift : shift + c] = self.valid[:B, :c].clone()
        self.valid[:B, :shift] = False
        self.col += shift
        self._shift_spans(shift)

    def zero_column(self, layer: int) -> None:
        """Zero column `col` of layer `layer` for every live row: a decode step that advances only some rows
        calls it before writing theirs, so idle rows' columns hold zeros, never stale memory."""
        self.k[layer, : self.num_rows, :, self.col] = 0
        self.v[layer, : self.num_rows, :, self.col] = 0

    def hole_fraction(self) -> float:
        """Share of the used columns that are masked out (padding, idle steps, dropped history)."""
        if self.col == 0 or self.num_rows == 0:
            return 0.0
        used = int(self.valid[: self.num_rows, : self.col].sum())
        return 1.0 - used / (self.num_rows * self.col)

    def compact(self) -> None:
        """Move every live row's valid columns to the right end of a shorter window, dropping holes.

        Each row keeps its tokens in order; rows with fewer tokens get left padding again. One gather per
        buffer; worth it when `hole_fraction()` is large, since attention cost grows with `col`.
        """
        B = self.num_rows
        if B == 0:
            self.col = 0
            self.share, self.spans = [], {}
            return
        valid = self.valid[:B, : self.col]
        width = int(valid.sum(1).max())
        # A stable sort puts invalid columns first and keeps valid ones in order: keep the last `width`.
        order = torch.sort(valid.to(torch.int8), dim=1, stable=True).indices[:, self.col - width :]  # (B, W)
        L, _, KVH, _, D = self.k.shape
        idx = order.view(1, B, 1, width, 1).expand(L, B, KVH, width, D)
        k = self.k[:, :B].gather(3, idx)
        v = self.v[:, :B].gather(3, idx)
        new_valid = valid.gather(1, order)
        self.k[:, :B, :, :width] = k
        self.v[:, :B, :, :width] = v
        self.valid[:B] = False
        self.valid[:B, :width] = new_valid
        self.col = width
        self.share, self.spans = [-1] * B, {}  # rows moved by different amounts: nothing lines up any more


def _uninitialised(like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A buffer whose content is whatever memory held (see the module docstring for why that is safe); tests
    replace this with a NaN fill to prove no unwritten slot is ever read."""
    return like.new_empty(shape)
