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
"""

from __future__ import annotations

import torch

__all__ = ["KVCache"]


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
            c = self.col
            self.k[:, moved, :, :c] = self.k[:, src, :, :c]
            self.v[:, moved, :, :c] = self.v[:, src, :, :c]
            self.valid[moved, :c] = self.valid[src, :c]
        self.num_rows = n

    def append_rows(self, k: torch.Tensor, v: torch.Tensor, valid: torch.Tensor) -> None:
        """Add rows whose prefilled keys/values (L, B_new, KVH, P, D) end right before column `col`."""
        L, B_new, KVH, P, D = k.shape
        if P > self.col:  # a prompt longer than the history so far: make room on the left
            shift = P - self.col
            if self.num_rows == 0:  # nothing to move
                self.col = 0
                self.ensure_capacity(cols=P + 1)
                self.col = P
            elif self.col + shift < self.capacity:  # move the history right inside the buffers: no reallocation
                B, c = self.num_rows, self.col
                self.k[:, :B, :, shift : shift + c] = self.k[:, :B, :, :c].clone()
                self.v[:, :B, :, shift : shift + c] = self.v[:, :B, :, :c].clone()
                self.valid[:B, shift : shift + c] = self.valid[:B, :c].clone()
                self.valid[:B, :shift] = False
                self.col += shift
            else:  # grow by half as well: the next longer prompt or the decode steps to come then fit in place
                self._resize(self.row_capacity, max(self.col + shift + 1, self.capacity + self.capacity // 2), shift=shift)
        self.ensure_capacity(cols=self.col + 1, rows=self.num_rows + B_new)
        rows = slice(self.num_rows, self.num_rows + B_new)
        # Columns from `col` on are written by the decode steps to come; only the history left of it is zeroed.
        self.k[:, rows, :, : self.col] = 0
        self.v[:, rows, :, : self.col] = 0
        self.valid[rows] = False
        if P:
            self.k[:, rows, :, self.col - P : self.col] = k
            self.v[:, rows, :, self.col - P : self.col] = v
            self.valid[rows, self.col - P : self.col] = valid
        self.num_rows += B_new

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


def _uninitialised(like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A buffer whose content is whatever memory held (see the module docstring for why that is safe); tests
    replace this with a NaN fill to prove no unwritten slot is ever read."""
    return like.new_empty(shape)
