"""Scale-out of eval runs: `--shard I/K` runs a deterministic slice; `merge_runs` joins the slices.

A shard is a contiguous block of whole chunks: of C chunks, shard I of K gets chunks [I*C//K, (I+1)*C//K).
Chunks are the eval's batching and resume unit, so each shard solves exactly
the batches an unsharded run solves, with the same per-problem seeds: the merged rows are the rows an
unsharded run writes, and the merged summary is its summary. Cutting inside a chunk would change batch
composition (and on the in-process engine, padding numerics).

Each shard records what it covers in `shard.json` beside its results: the problems in order, the problem
count of the whole task, the strategies and seeds. `merge_runs` checks from those that every shard is there
once, no problem is missing or duplicated and every row exists, then writes the results in the unsharded
order (seed, problem, strategy) and builds the summary, tables and plots with `run_eval` itself (every row is
done, so nothing is generated and the summary code is the same).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from .._errors import DataError, ValidationError
from ..tasks import Problem
from ._identity import differing_setting
from ._results import ResultsFile, drop_duplicates, run_dir_lock

__all__ = ["parse_shard", "take_shard", "merge_runs", "SHARD_FILE"]

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
    lo, hi = index * num_chunks // count, (index + 1) * num_chunks // count
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
        old = _read_json(path)
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


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise DataError(f"{path} is unreadable or not JSON") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a JSON object")
    return data


class _NoEngine:
    """Stands in for the engine when merging: every row is already done, so generating would be a bug."""

    def __init__(self) -> None:
        from ..engines import EngineUsage

        self.usage = EngineUsage()

    def generate(self, *args, **kwargs):
        raise AssertionError("merge found a missing row after checking that none is missing")

    start = generate


class _NoScorer:
    def __init__(self) -> None:
        from ..scorers import ScorerUsage

        self.usage = ScorerUsage()

    def score(self, *args, **kwargs):
        raise AssertionError("merge found a missing row after checking that none is missing")


def merge_runs(run_dirs: Sequence[str | Path], out: str | Path, *, log=print):
    """Join the result files of shards 0/K .. K-1/K into `out`, with the summary an unsharded run would give.

    Raises `DataError` (one line) when a shard is missing or given twice, the shards disagree on settings,
    a problem is missing or duplicated, or a shard has not finished."""
    from .runner import EvalConfig, run_eval

    out = Path(out)
    if not run_dirs:
        raise ValidationError("give the shard run directories to merge.", parameter="run_dirs")
    shards = []
    for d in map(Path, run_dirs):
        if not (d / "run.json").exists():
            raise DataError(f"{d} is not an eval run directory (no run.json)")
        if not (d / SHARD_FILE).exists():
            raise DataError(f"{d} is not a shard (no {SHARD_FILE}); merge joins runs made with `testtime eval --shard I/K`")
        meta, manifest = _read_json(d / "run.json"), _read_json(d / SHARD_FILE)
        shards.append((d, meta, manifest, parse_shard(manifest.get("shard", ""))))
    shards.sort(key=lambda s: s[3][0])

    first_dir, first_meta, first_manifest, (_, count) = shards[0]
    identity = {k: v for k, v in first_meta.get("identity", {}).items() if k != "shard"}
    seen: dict[int, Path] = {}
    for d, meta, manifest, (index, k) in shards:
        if k != count:
            raise DataError(f"{d} is shard {index}/{k} but {first_dir} is one of {count}; merge shards of one split")
        if index in seen:
            raise DataError(f"shard {index}/{count} is given twice ({seen[index]} and {d})")
        seen[index] = d
        other = meta.get("identity", {})
        key = differing_setting(identity, other, ignore=("shard",))
        if key is not None:
            raise DataError(f"the shards ran different settings ({key}: {identity.get(key)!r} in {first_dir}, {other.get(key)!r} in {d})")
        for key in ("strategies", "seeds", "num_problems"):
            if manifest.get(key) != first_manifest.get(key):
                raise DataError(
                    f"the shards ran different {key} ({first_manifest.get(key)!r} in {first_dir}, {manifest.get(key)!r} in {d}); "
                    "rerun them with the same --strategy and --seed"
                )
    missing = [i for i in range(count) if i not in seen]
    if missing:
        raise DataError(f"shard {missing[0]}/{count} is missing ({len(missing)} of {count} missing); run it with --shard {missing[0]}/{count} and merge again")

    strategies, seeds = first_manifest["strategies"], first_manifest["seeds"]
    ids: list[str] = []
    owner: dict[str, Path] = {}
    for d, _, manifest, _ in shards:
        if manifest.get("first_problem") != len(ids):
            raise DataError(f"{d} starts at problem {manifest.get('first_problem')}, expected {len(ids)}: the shards split different problem lists")
        for pid in manifest["problem_ids"]:
            if pid in owner:
                raise DataError(f"problem {pid!r} is in two shards ({owner[pid]} and {d})")
            owner[pid] = d
            ids.append(pid)
    if len(ids) != first_manifest["num_problems"]:
        raise DataError(f"the shards cover {len(ids)} of {first_manifest['num_problems']} problems")

    rows: dict[tuple, dict] = {}
    for d, _, manifest, (index, _) in shards:
        mine = set(manifest["problem_ids"])
        # A row written twice (two evals into one shard directory, before the writer lock) counts once.
        for r in drop_duplicates(ResultsFile(d / "results.jsonl").load())[0]:
            key = (r.get("problem_id"), r.get("strategy"), r.get("seed"))
            if key[0] not in mine or key[1] not in strategies or key[2] not in seeds:
                continue  # a row of a strategy or seed this merge does not cover (run_eval filters the same way)
            rows[key] = r
        lacking = [(p, s, sd) for sd in seeds for p in manifest["problem_ids"] for s in strategies if (p, s, sd) not in rows]
        if lacking:
            p, s, sd = lacking[0]
            raise DataError(
                f"shard {index}/{count} ({d}) lacks {len(lacking)} results (first: problem {p!r}, strategy {s}, seed {sd}); "
                "rerun its command to finish it, then merge again"
            )

    config = EvalConfig(**identity, strategies=list(strategies), seeds=list(seeds), out=str(out))
    with run_dir_lock(out):  # run_eval below takes it again (same process)
        _prepare_out(out, config, first_meta, [str(d) for d, *_ in shards])
        ordered = [rows[(p, s, sd)] for sd in seeds for p in ids for s in strategies]
        ResultsFile(out / "results.jsonl").append(ordered)
        by_id = {r["problem_id"]: r for r in ordered}
        problems = [Problem(id=p, answer=by_id[p]["gold"], level=by_id[p].get("level")) for p in ids]
        return run_eval(config, engine=_NoEngine(), scorer=_NoScorer(), problems=problems, progress=False, log=log)


def _prepare_out(out: Path, config, shard_meta: dict, merged_from: list[str]) -> None:
    """A fresh merge directory (or a previous merge's, which is rebuilt); never a real run's."""
    run_json = out / "run.json"
    if run_json.exists() and "merged_from" not in _read_json(run_json):
        raise DataError(f"{out} holds an eval run, not a merge; merge into another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.jsonl").unlink(missing_ok=True)
    meta = {**shard_meta, "identity": json.loads(json.dumps(config.identity())), "merged_from": merged_from}
    tmp = run_json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, run_json)
