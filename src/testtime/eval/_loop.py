"""The resumable run loop that `run_eval` and `bench spr` share.

A run is a fixed list of pieces of work (the same pieces on every run of the same command), each writing a known
set of rows. A piece whose rows are all stored is skipped; any other piece runs, and only its missing rows are
appended, in the piece's order, as soon as it finishes. What a piece runs for its missing rows is its own rule:
the eval re-runs the whole chunk (the same batch gives the same numbers), `bench spr` only the missing problems.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from ._results import ResultsFile

__all__ = ["Piece", "run_pieces", "append_rows"]


@dataclass
class Piece:
    """One resumable piece of a run."""

    keys: list[Hashable]
    """The keys of the rows this piece writes, in the order they are appended."""
    run: Callable[[list[Hashable]], list[dict]]
    """Given the keys still missing, makes their rows (extra rows, of keys already stored, are dropped)."""


def run_pieces(
    pieces: Iterable[Piece],
    results: ResultsFile,
    *,
    done: set,
    key: Callable[[dict], Hashable],
    on_append: Callable[[Piece, list[dict]], None] | None = None,
    max_minutes: float | None = None,
) -> bool:
    """Run every piece that misses a row, in order; append its missing rows and add their keys to `done`, then
    call `on_append(piece, rows)`. Returns False when `max_minutes` ran out before a piece with work (no piece
    is cut short: rerun to continue), True when every piece is done."""
    start = time.perf_counter()
    for piece in pieces:
        missing = [k for k in piece.keys if k not in done]
        if not missing:
            continue
        if max_minutes is not None and time.perf_counter() - start > 60 * max_minutes:
            return False
        rows = append_rows(piece.run(missing), missing, results, done=done, key=key)
        if on_append is not None:
            on_append(piece, rows)
    return True


def append_rows(rows: list[dict], missing: list[Hashable], results: ResultsFile, *, done: set, key: Callable[[dict], Hashable]) -> list[dict]:
    """Append the rows of `missing` keys not yet in `done`, in the order of `missing`, and add their keys to
    `done`; returns what was appended. A row of a key already stored is dropped here, so a piece that ran twice
    (a Ray task retried after its reply was lost) never writes a row twice."""
    order = {k: i for i, k in enumerate(missing) if k not in done}
    rows = sorted((r for r in rows if key(r) in order), key=lambda r: order[key(r)])
    results.append(rows)
    done.update(key(r) for r in rows)
    return rows
