"""Scale-out of eval runs: `--shard I/K` runs a deterministic slice (`take_shard`); `_merge.merge_runs` joins
the slices.

A shard is a contiguous block of whole chunks: of C chunks, shard I of K gets chunks [I*C//K, (I+1)*C//K).
Chunks are the eval's batching and resume unit, so each shard solves exactly
the batches an unsharded run solves, with the same per-problem seeds: the merged rows are the rows an
unsharded run writes, and the merged summary is its summary. Cutting inside a chunk would change batch
composition (and on the in-process engine, padding numerics).

Each shard records what it covers in `shard.json` beside its results: the problems in order, the problem
count of the whole task, the strategies and seeds, which the merge checks.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .._errors import DataError, ValidationError
from ..tasks import Problem

__all__ = ["parse_shard", "read_json", "shard_bounds", "take_shard", "SHARD_FILE"]

SHARD_FILE = "shard.json"
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """"I/K" -> (I, K), 0 <= I < K (zero-based, like a Slurm array's SLURM_ARRAY_TASK_ID)."""
    m = _SHARD.match(text) if isinstance(text, str) else None
    if m is None or not int(m.group(1)) < int(m.group(2)):
        raise ValidationError(
            f"`shard` must be I/K with 0 <= I < K (e.g. 0/4 .. 3/4), got {text!r}.",
            parameter="shard",
            value=text,
        )
    return int(m.group(1)), int(m.group(2))


def shard_bounds(num_chunks: int, index: int, count: int) -> tuple[int, int]:
    """Chunks [lo, hi) of shard `index` of `count` (the split `--shard` and `--ray` share)."""
    return index * num_chunks // count, (index + 1) * num_chunks // count


def take_shard(chunks: list[list[Problem]], config, out: Path) -> list[list[Problem]]:
    """The chunks of `config.shard`, recording them in out/shard.json (checked against it on resume)."""
    index, count = parse_shard(config.shard)
    num_chunks = len(chunks)
    num_problems = sum(len(c) for c in chunks)
    if count > num_chunks:
        raise ValidationError(
            f"--shard {config.shard}: {num_problems} problems make {num_chunks} chunks of {config.chunk_size()}, "
            f"and a shard takes whole chunks; use K <= {num_chunks} or a smaller --batch-problems.",
            parameter="shard",
            value=config.shard,
        )
    lo, hi = shard_bounds(num_chunks, index, count)
    mine = chunks[lo:hi]
    manifest = {
        "shard": f"{index}/{count}",
        "num_problems": num_problems,
        "first_problem": sum(len(c) for c in chunks[:lo]),
        "problem_ids": [p.id for c in mine for p in c],
        "strategies": list(config.strategies),
        "seeds": list(config.seeds),
    }
    path = out / SHARD_FILE
    if path.exists():
        old = read_json(path)
        for key in ("shard", "num_problems", "first_problem", "problem_ids"):
            if old.get(key) != manifest[key]:
                raise DataError(
                    f"{path} records a different slice ({key} differs): the task's problems changed since this shard "
                    "started; use another --out to start over"
                )
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, path)
    return mine


def read_json(path: Path) -> dict:
    """A JSON object from a run's metadata file; a `DataError` naming the file otherwise."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise DataError(f"{path} is unreadable or not JSON") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a JSON object")
    return data
