"""`gsm8k`: grade-school math word problems (openai/gsm8k, config "main").

Golds are the number after "####" in the reference solution, commas removed ("#### 1,234" -> "1234").
Answers are plain numbers, so the grader may fall back to the last number in a completion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._errors import DataError, ValidationError
from ._files import read_hub, read_jsonl, require_field
from ._problem import Problem
from ._prompts import GSM8K_SYSTEM_PROMPT, build_messages

__all__ = ["Gsm8kTask", "parse_gold"]


@dataclass
class Gsm8kTask:
    """GSM8K from `openai/gsm8k` (config "main", splits train/test) or a local JSONL via `data=`."""

    name = "gsm8k"
    splits = ("train", "test")
    hub_dataset = "openai/gsm8k"

    def load(
        self,
        *,
        split: str = "test",
        data: str | Path | None = None,
        limit: int | None = None,
        levels: Sequence[int] | None = None,
        seed: int = 0,
        system_prompt: str | None = None,
    ) -> list[Problem]:
        """Problems in data set order, ids `gsm8k-{split}-{row:04d}` from 0 (`seed` is unused)."""
        if levels is not None:
            raise ValidationError(
                f"task 'gsm8k' has no difficulty levels, got `levels`={list(levels)}; drop `levels`.",
                parameter="levels",
                value=list(levels),
            )
        source = str(data) if data is not None else self.hub_dataset
        rows = (
            read_jsonl(data)
            if data is not None
            else read_hub(self.hub_dataset, "main", split, file_hint=f"PATH/gsm8k_{split}.jsonl")
        )
        system = GSM8K_SYSTEM_PROMPT if system_prompt is None else system_prompt
        problems = []
        for index, (line, row) in enumerate(rows):
            if limit is not None and index >= limit:
                break
            question = require_field(row, "question", source=source, line_number=line)
            solution = require_field(row, "answer", source=source, line_number=line)
            problems.append(
                Problem(
                    id=f"gsm8k-{split}-{index:04d}",
                    question=question,
                    messages=build_messages(question, system_prompt=system),
                    answer=parse_gold(solution, source=source, line=line),
                    level=None,
                    last_number_fallback=True,
                    meta={"solution": solution},
                )
            )
        return problems


def parse_gold(solution: str, *, source: str = "gsm8k", line: int = 0) -> str:
    """The final answer of a GSM8K solution: the text after the last "####", without commas or spaces."""
    if "####" not in solution:
        raise DataError(f"{source} line {line}: field 'answer' has no '#### N' final answer")
    gold = solution.rsplit("####", 1)[1].strip().replace(",", "")
    if not gold:
        raise DataError(f"{source} line {line}: field 'answer' has nothing after '####'")
    return gold
