"""The unit of work every strategy solves: one question, its prompt, and (when known) its gold answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Problem"]


@dataclass
class Problem:
    """One problem of a task, ready for a strategy.

    The task builds `messages` from its prompt template; strategies send them to the engine unchanged and
    give `question` (the bare problem text) to scorers, which format it their own way.
    """

    id: str = ""
    """Stable id, unique within the task ("arith-test-L3-0012", "math500-test/precalculus/807")."""
    question: str = ""
    """The problem statement as a user would write it, without system prompt or formatting."""
    messages: list[dict[str, str]] = field(default_factory=list)
    """Chat messages the generator sees (system + few-shot + user). Empty means `[{"role": "user", "content": question}]`."""
    answer: str | None = None
    """Gold answer as a string (LaTeX allowed); None when the task has no gold answers."""
    level: int | None = None
    """Difficulty level 1 (easiest) .. 5 when the task defines one, else None."""
    last_number_fallback: bool = False
    """When no boxed / "final answer is" / `#### N` answer is found, take the last number in the text (arith, gsm8k)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Task-specific extras (subject, solution, unique_id); carried into result files, never read by strategies."""

    def chat(self) -> list[dict[str, str]]:
        """The messages to send: `messages`, or a single user turn holding `question`."""
        return self.messages or [{"role": "user", "content": self.question}]
