"""Eval rows compared across runs: everything but the wall times, which no two runs share."""

from __future__ import annotations

import json


def without_wall_time(row: dict) -> dict:
    """A copy of an eval row without its measured wall times (the row's and each budget's)."""
    row = json.loads(json.dumps(row))
    row["usage"].pop("wall_time")
    for at in row["by_n"].values():
        at.pop("wall_time")
    return row
