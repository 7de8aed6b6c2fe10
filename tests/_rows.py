"""Eval rows compared across runs: everything but the wall times, which no two runs share."""

from __future__ import annotations

import json


def without_measurements(row: dict) -> dict:
    """A copy of an eval row without what depends on how the run was laid out: its measured wall times (the row's
    and each budget's), and the split of its prompt tokens into computed and read from the engine's prefix cache
    (a shard's engine has cached other prompts than an unsharded run's; their sum stays)."""
    row = json.loads(json.dumps(row))
    row["usage"].pop("wall_time")
    u = row["usage"]
    u["num_prefill_tokens"] = u.get("num_prefill_tokens", 0) + u.pop("num_cached_prompt_tokens", 0)
    for at in row["by_n"].values():
        at.pop("wall_time")
    return row
