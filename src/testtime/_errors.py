"""Errors raised by testtime.

Every error a user can cause is a `TesttimeError`, so `cli.py` and `serve/` can answer it with one line
(or a 4xx) instead of a traceback. The tree:

    TesttimeError
    ├── ValidationError      a parameter or request field has a bad value (also a ValueError)
    ├── UnknownNameError     a model, task, strategy, scorer or engine name is not registered (also a KeyError)
    ├── DataError            a data file is missing, malformed, or lacks a field
    ├── EngineError          text generation failed (model load, context overflow, remote server)
    ├── ScorerError          a reward model failed to load or score
    └── MissingDependencyError  an optional extra is not installed (also an ImportError)

Messages say what is wrong, the offending value, what is allowed, and the fix:
"`top_p` must be in (0, 1], got 1.5."
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

__all__ = [
    "TesttimeError",
    "ValidationError",
    "UnknownNameError",
    "DataError",
    "EngineError",
    "ScorerError",
    "MissingDependencyError",
    "error_context",
    "problem_context",
]


class TesttimeError(Exception):
    """Base of every error testtime raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.context: list[str] = []

    def __str__(self) -> str:
        # Context is prepended innermost-last: "problem arith-3: request 2: `max_tokens` must be ..."
        return ": ".join([*self.context, self.message])


class ValidationError(TesttimeError, ValueError):
    """A parameter or request field has a value outside its allowed range.

    Raised by params `__post_init__` (static checks) and `verify(engine)` (model-dependent checks).
    `parameter` names the field so `serve/` can answer 400 naming it.
    """

    def __init__(self, message: str, *, parameter: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.value = value


class UnknownNameError(TesttimeError, KeyError):
    """A registry lookup failed; the message lists the valid names."""

    def __init__(self, kind: str, name: str, choices: Iterable[str], hint: str = "") -> None:
        valid = ", ".join(sorted(choices))
        msg = f"unknown {kind} {name!r}; choose one of: {valid}"
        super().__init__(msg + (f". {hint}" if hint else ""))
        self.kind = kind
        self.name = name

    __str__ = TesttimeError.__str__  # KeyError would repr() the message


class DataError(TesttimeError):
    """A data set or results file is missing, malformed, or lacks a required field."""


class EngineError(TesttimeError):
    """The engine could not load a model or generate (context overflow, server failure)."""


class ScorerError(TesttimeError):
    """A scorer could not load its model or score a request."""


class MissingDependencyError(TesttimeError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, what: str) -> None:
        super().__init__(f"{what} needs `{package}`, which is not installed; run `pip install 'testtime[{extra}]'`")


def check(condition: bool, message: str, *, parameter: str | None = None, value: Any = None) -> None:
    """Raise `ValidationError(message)` unless `condition` holds (for user input, never invariants)."""
    if not condition:
        raise ValidationError(message, parameter=parameter, value=value)


@contextlib.contextmanager
def error_context(label: str) -> Iterator[None]:
    """Prefix any `TesttimeError` raised inside with `label` ("problem gsm8k-12"), once per layer crossed."""
    try:
        yield
    except TesttimeError as exc:
        exc.context.insert(0, label)
        raise


@contextlib.contextmanager
def problem_context(problem_ids: Sequence[str]) -> Iterator[None]:
    """Around an engine call made with one request per problem, in order: an error the engine labelled
    "request i" (the innermost such label) says "problem <id>" instead, which a user can find in the data."""
    try:
        yield
    except TesttimeError as exc:
        labels = [k for k, label in enumerate(exc.context) if label.startswith("request ") and label[len("request ") :].isdigit()]
        if labels:
            k = labels[-1]
            i = int(exc.context[k][len("request ") :])
            if i < len(problem_ids):
                exc.context[k] = f"problem {problem_ids[i]}"
        raise
