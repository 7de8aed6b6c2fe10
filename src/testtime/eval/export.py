"""`export_records`: eval runs as training data, in the JSONL formats TRL's trainers and `datasets` read directly.

- sft: `{"messages": [...prompt turns, {"role": "assistant", "content": candidate}]}` (TRL conversational
  language modeling); the prompt turns are exactly what the generator saw (system, few-shot, question).
- dpo: `{"prompt": [...turns], "chosen": [assistant turn], "rejected": [assistant turn]}` (TRL conversational
  preference, explicit prompt).
- prm: `{"prompt": question, "completions": [step, ...], "labels": [bool, ...]}` (TRL stepwise supervision;
  labels from `_step_labels`).

Every record carries `provenance`: run, problem id, strategy, n, seed and candidate index (dpo: one such dict
for each side), plus the candidate's answer, correctness and reward.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .._errors import DataError, UnknownNameError
from ..scorers import split_steps
from ._export_pool import PoolCandidate, ProblemPool, load_pools
from ._export_select import ExportRules, preference_pairs, select_candidates
from ._step_labels import correct_prefixes, step_labels

__all__ = ["EXPORT_FORMATS", "ExportRules", "ExportResult", "export_records", "write_jsonl_atomic"]

EXPORT_FORMATS = ("sft", "dpo", "prm")


@dataclass
class ExportResult:
    records: list[dict]
    num_problems: int
    """Problems read from the runs."""
    num_problems_used: int
    """Problems that gave at least one record."""


def _provenance(c: PoolCandidate) -> dict:
    return {**c.provenance(), "answer": c.answer, "correct": c.correct, "reward": c.reward}


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _sft(pool: ProblemPool, rules: ExportRules) -> list[dict]:
    return [{"messages": pool.problem.chat() + _assistant(c.text), "provenance": _provenance(c)} for c in select_candidates(pool, rules)]


def _dpo(pool: ProblemPool, rules: ExportRules) -> list[dict]:
    return [
        {"prompt": pool.problem.chat(), "chosen": _assistant(a.text), "rejected": _assistant(b.text), "provenance": {"chosen": _provenance(a), "rejected": _provenance(b)}}
        for a, b in preference_pairs(pool, rules)
    ]


def _prm(pool: ProblemPool, rules: ExportRules) -> list[dict]:
    good = correct_prefixes(pool)  # from every candidate of the problem, not only the selected ones
    out = []
    for c in select_candidates(pool, rules):
        steps = split_steps(c.text)
        if steps:  # an empty candidate has no step to label
            out.append({"prompt": pool.problem.question, "completions": steps, "labels": step_labels(steps, good), "provenance": _provenance(c)})
    return out


_FORMATS = {"sft": _sft, "dpo": _dpo, "prm": _prm}


def export_records(run_dirs: list[str], fmt: str, rules: ExportRules | None = None, *, strategies: list[str] | None = None) -> ExportResult:
    """Training records of format `fmt` from these eval run directories, problems in first-seen order.

    Raises `UnknownNameError` for a format not in `EXPORT_FORMATS`, `DataError` for a directory that is not a run,
    a run without rows, or rules the runs cannot satisfy (no gold answers for --correct-only, no rewards for
    --top-k), or when no candidate passes the rules."""
    if fmt not in _FORMATS:
        raise UnknownNameError("export format", fmt, EXPORT_FORMATS)
    rules = rules or ExportRules()
    pools = load_pools(run_dirs, strategies=strategies)
    per_problem = [_FORMATS[fmt](pool, rules) for pool in pools]
    records = [r for recs in per_problem for r in recs]
    if not records:
        raise DataError(f"no {fmt} record from {len(pools)} problems of {', '.join(run_dirs)}: no candidate passed the selection rules ({rules}); loosen them.")
    return ExportResult(records=records, num_problems=len(pools), num_problems_used=sum(bool(r) for r in per_problem))


def write_jsonl_atomic(records: list[dict], path: str | Path, *, inputs: list[str] = ()) -> Path:
    """Write one JSON object per line to `path` through a temporary file renamed into place, so a reader never
    sees half a file and a failed write leaves the old one. Refuses a directory, or a path inside `inputs` (a
    run directory being exported)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"--out {path} is a directory; pass a file name, e.g. {path / 'data.jsonl'}.")
    target = path.resolve()
    for run in inputs:
        if target.is_relative_to(Path(run).resolve()):
            raise DataError(f"--out {path} is inside the input run directory {run}; write the export somewhere else so the run stays as it was.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
