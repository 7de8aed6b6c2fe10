"""`instructions`: a small built-in set of open-ended instructions, for reward maximisation without gold answers.

Speculative Rejection's paper setting (AlpacaFarm-style prompts scored by an outcome reward model) has no
right answer to grade: strategies are compared by the reward of the response they choose, by an LLM judge,
and by the generator's perplexity of that response. These 40 instructions (emails, explanations, how-tos,
advice, short creative writing; written for this package, short enough for a 135M model) make that setting
run offline. They ship as `testtime/data/instructions.jsonl` (fields `id`, `category`, `instruction`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._errors import ValidationError
from ._files import read_jsonl, require_field
from ._problem import Problem
from ._prompts import build_messages

__all__ = ["InstructionsTask", "INSTRUCTIONS_FILE", "INSTRUCTIONS_SYSTEM_PROMPT"]

INSTRUCTIONS_FILE = Path(__file__).resolve().parent.parent / "data" / "instructions.jsonl"
INSTRUCTIONS_SYSTEM_PROMPT = "You are a helpful assistant. Answer the user's request clearly and concisely."


@dataclass
class InstructionsTask:
    """The built-in open-ended instructions (no gold answers, no levels); `data=` reads another file with the
    same fields."""

    name = "instructions"
    splits = ("test",)

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
        """Instructions in file order (`seed` is unused)."""
        if levels is not None:
            raise ValidationError("task 'instructions' has no difficulty levels; drop `levels`.", parameter="levels", value=list(levels))
        path = Path(data) if data is not None else INSTRUCTIONS_FILE
        system = INSTRUCTIONS_SYSTEM_PROMPT if system_prompt is None else system_prompt
        problems = []
        for line, row in read_jsonl(path):
            question = str(require_field(row, "instruction", source=str(path), line_number=line))
            problems.append(
                Problem(
                    id=str(row.get("id") or f"instr-{line:03d}"),
                    question=question,
                    messages=build_messages(question, system_prompt=system),
                    answer=None,
                    last_number_fallback=False,
                    meta={"category": row.get("category")},
                )
            )
            if limit is not None and len(problems) >= limit:
                break
        return problems
