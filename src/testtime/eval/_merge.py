"""`merge_runs`: the shards of an eval (`eval --shard I/K`, `_shard.take_shard`) joined into one run.

It checks from each shard's `shard.json` that every shard is there once, no problem is missing or duplicated
and every row exists, then writes the rows in the unsharded order (seed, problem, strategy) and summarizes them
with `runner.write_summary`, the summary half of `run_eval`: the merged results and summary are those of an
unsharded run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from .._errors import DataError, ValidationError
from ._identity import differing_setting
from ._results import ResultsFile, drop_duplicates, run_dir_lock
from ._shard import SHARD_FILE, parse_shard, read_json
from .runner import EvalConfig, EvalReport, write_summary

__all__ = ["merge_runs"]


def merge_runs(run_dirs: Sequence[str | Path], out: str | Path, *, log=print) -> EvalReport:
    """Join the result files of shards 0/K .. K-1/K into `out`, with the summary an unsharded run would give.

    Raises `DataError` (one line) when a shard is missing or given twice, the shards disagree on settings,
    a problem is missing or duplicated, or a shard has not finished."""
    out = Path(out)
    if not run_dirs:
        raise ValidationError("give the shard run directories to merge.", parameter="run_dirs")
    shards = []
    for d in map(Path, run_dirs):
        if not (d / "run.json").exists():
            raise DataError(f"{d} is not an eval run directory (no run.json)")
        if not (d / SHARD_FILE).exists():
            raise DataError(f"{d} is not a shard (no {SHARD_FILE}); merge joins runs made with `testtime eval --shard I/K`")
        meta, manifest = read_json(d / "run.json"), read_json(d / SHARD_FILE)
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
    with run_dir_lock(out):
        _prepare_out(out, config, first_meta, [str(d) for d, *_ in shards])
        results = ResultsFile(out / "results.jsonl")
        results.append([rows[(p, s, sd)] for sd in seeds for p in ids for s in strategies])
        return write_summary(config, ids, results.load(), log=log)


def _prepare_out(out: Path, config, shard_meta: dict, merged_from: list[str]) -> None:
    """A fresh merge directory (or a previous merge's, which is rebuilt); never a real run's."""
    run_json = out / "run.json"
    if run_json.exists() and "merged_from" not in read_json(run_json):
        raise DataError(f"{out} holds an eval run, not a merge; merge into another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.jsonl").unlink(missing_ok=True)
    meta = {**shard_meta, "identity": json.loads(json.dumps(config.identity())), "merged_from": merged_from}
    tmp = run_json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, run_json)
