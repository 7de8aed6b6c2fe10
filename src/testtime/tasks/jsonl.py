"""`jsonl`: problems from any JSONL file, one object a line, with configurable field names.

For private or new benchmarks: `load_task("jsonl", data="my.jsonl", problem_field="question")`. The file is
the whole data set, so `split` only labels the ids when the file has no id field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._errors import ValidationError
from ._files import parse_level, read_jsonl, require_text
from ._problem import Problem
from ._prompts import MATH_SYSTEM_PROMPT, build_messages

__all__ = ["JsonlTask"]


@dataclass
class JsonlTask:
    """A JSONL file of problems; every line is a JSON object, blank lines are skipped."""

    problem_field: str = "problem"
    """Field holding the question text."""
    answer_field: str | None = "answer"
    """Field holding the gold answer: a string or a number (which becomes a string); None for a file without
    golds. A list, an object or null is refused with the line number."""
    id_field: str | None = None
    """Field holding a unique id; None numbers problems `{file stem}-{split}-{line number}`."""
    level_field: str | None = None
    """Field holding an integer difficulty level 1..5; None means no levels (then `levels=` is an error)."""
    last_number_fallback: bool = False
    """Grade the last number of a completion when it has no boxed answer (True for numeric answers)."""

    name = "jsonl"
    splits = None  # any split name: the file is the split

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
        """Problems in file order (`seed` is unused); the default system prompt is `MATH_SYSTEM_PROMPT`."""
        if data is None:
            raise ValidationError(
                "task 'jsonl' needs `data`, the path of a JSONL file (`--data PATH`).", parameter="data"
            )
        if levels is not None and self.level_field is None:
            raise ValidationError(
                f"`levels`={list(levels)} needs `level_field`, the field holding each problem's level.",
                parameter="levels",
                value=list(levels),
            )
        source = str(data)
        system = MATH_SYSTEM_PROMPT if system_prompt is None else system_prompt
        problems = []
        for line, row in read_jsonl(data):
            level = None
            if self.level_field is not None:
                level = parse_level(row, self.level_field, source=source, line_number=line)
                if levels is not None and level not in levels:
                    continue
            question = require_text(row, self.problem_field, source=source, line_number=line)
            answer = None
            if self.answer_field is not None:
                answer = require_text(row, self.answer_field, source=source, line_number=line, numbers=True)
            if self.id_field is not None:
                problem_id = require_text(row, self.id_field, source=source, line_number=line, numbers=True)
            else:
                problem_id = f"{Path(data).stem}-{split}-{line}"
            problems.append(
                Problem(
                    id=problem_id,
                    question=question,
                    messages=build_messages(question, system_prompt=system),
                    answer=answer,
                    level=level,
                    last_number_fallback=self.last_number_fallback,
                    meta={"line": line},
                )
            )
            if limit is not None and len(problems) >= limit:
                break
        return problems
