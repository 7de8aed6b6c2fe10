"""`math500`: the 500-problem MATH subset of "Let's Verify Step by Step" (HuggingFaceH4/MATH-500).

It is the benchmark of the test-time compute papers we reproduce (search-and-learn, Snell et al. 2024), so
the default prompt is search-and-learn's. Rows come from the hub, or from a local JSONL copy with the same
fields (problem, solution, answer, subject, level, unique_id) for offline machines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._files import parse_level, read_hub, read_jsonl, require_field
from ._problem import Problem
from ._prompts import MATH_SYSTEM_PROMPT, build_messages

__all__ = ["Math500Task"]


@dataclass
class Math500Task:
    """MATH-500 from `HuggingFaceH4/MATH-500` (split "test") or a local JSONL via `data=`."""

    name = "math500"
    splits = ("test",)
    hub_dataset = "HuggingFaceH4/MATH-500"

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
        """Problems in data set order (`seed` is unused: the first `limit` rows are always the same rows)."""
        source = str(data) if data is not None else self.hub_dataset
        rows = (
            read_jsonl(data)
            if data is not None
            else read_hub(self.hub_dataset, None, split, file_hint="PATH/math500.jsonl")
        )
        system = MATH_SYSTEM_PROMPT if system_prompt is None else system_prompt
        problems = []
        for line, row in rows:
            level = parse_level(row, "level", source=source, line_number=line)
            if levels is not None and level not in levels:
                continue
            question = require_field(row, "problem", source=source, line_number=line)
            unique_id = str(row.get("unique_id") or f"{split}/{line}")
            problems.append(
                Problem(
                    # "test/precalculus/807.json" -> "math500-test/precalculus/807", the id in the Problem docs.
                    id="math500-" + unique_id.removesuffix(".json"),
                    question=question,
                    messages=build_messages(question, system_prompt=system),
                    answer=str(require_field(row, "answer", source=source, line_number=line)),
                    level=level,
                    last_number_fallback=False,  # answers are expressions; a stray number is no answer
                    meta={
                        "subject": row.get("subject"),
                        "unique_id": row.get("unique_id"),
                        "solution": row.get("solution"),
                    },
                )
            )
            if limit is not None and len(problems) >= limit:
                break
        return problems
