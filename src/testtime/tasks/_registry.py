"""The task registry (a plain dict, name -> class) and `load_task`, the one way callers get problems.

`load_task` owns the checks every task shares (split, limit, levels), so each task's `load` only parses
its source. Task-specific options (`problem_field=` for jsonl, `num_shots=` for arith) are the fields of
the task's dataclass and arrive through `**fields`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._errors import UnknownNameError, ValidationError
from ._problem import Problem
from .alpaca_farm import AlpacaFarmTask
from .arith import ArithTask
from .gsm8k import Gsm8kTask
from .instructions import InstructionsTask
from .jsonl import JsonlTask
from .math500 import Math500Task

__all__ = ["TASKS", "load_task"]

TASKS: dict[str, type] = {
    "arith": ArithTask,
    "math500": Math500Task,
    "gsm8k": Gsm8kTask,
    "jsonl": JsonlTask,
    "instructions": InstructionsTask,
    "alpaca_farm": AlpacaFarmTask,
}


def load_task(
    name: str,
    *,
    split: str = "test",
    data: str | Path | None = None,
    limit: int | None = None,
    offset: int = 0,
    levels: Sequence[int] | None = None,
    seed: int = 0,
    system_prompt: str | None = None,
    **fields: Any,
) -> list[Problem]:
    """Load the problems of task `name`, in the task's stable order.

    Args:
        split: "train", "dev" or "test" as the task has them (arith: all three; math500: test; gsm8k:
            train/test; jsonl: any, the file is the split).
        data: a local JSONL file instead of the hub (math500, gsm8k; required for jsonl; arith takes none).
        limit: at most this many problems (the first ones; arith interleaves levels so any limit is
            balanced). None: the whole split (arith: 100 per level).
        offset: skip this many problems first (with `limit`, problems offset .. offset + limit - 1), so one
            file can hold a tuning part and a test part.
        levels: keep only these difficulty levels 1..5 (arith, math500, jsonl with `level_field`).
        seed: the arith generator's seed; data set tasks ignore it (their rows are fixed).
        system_prompt: replaces the task's default system prompt; "" sends no system turn.
        **fields: task options, the fields of the task's dataclass (`JsonlTask.problem_field`, ...).
    """
    if name not in TASKS:
        raise UnknownNameError("task", name, TASKS)
    cls = TASKS[name]
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key, value in fields.items():
        if key not in allowed:
            raise ValidationError(
                f"task {name!r} has no option `{key}`; its options are: {', '.join(allowed) or 'none'}.",
                parameter=key,
                value=value,
            )
    if cls.splits is not None and split not in cls.splits:
        raise ValidationError(
            f"task {name!r} has no split {split!r}; choose one of: {', '.join(cls.splits)}.",
            parameter="split",
            value=split,
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValidationError(
            f"`limit` must be a positive integer or None, got {limit!r}.", parameter="limit", value=limit
        )
    if levels is not None:
        levels = list(levels)
        if not levels or any(isinstance(lv, bool) or lv not in range(1, 6) for lv in levels):
            raise ValidationError(
                f"`levels` must be a non-empty list of levels 1..5, got {levels!r}.",
                parameter="levels",
                value=levels,
            )
        levels = sorted(set(levels))
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationError(f"`offset` must be an integer >= 0, got {offset!r}.", parameter="offset", value=offset)
    task = cls(**fields)
    problems = task.load(
        split=split, data=data, limit=None if limit is None else offset + limit, levels=levels, seed=seed, system_prompt=system_prompt
    )
    return problems[offset:]
