"""A program: one problem's (or one request's) strategy code, run on its own thread and resumed by the scheduler.

Strategies stay straight-line code (`solve([problem])` with `engine.start`, `batch.advance`, `scorer.score`):
each call that needs the shared engine is a *yield point*. The program thread posts its operation and blocks;
the scheduler thread, which waits while any program runs, collects the operations of every program, does them
together (one decode loop for all rows, one scorer call for all score requests), and resumes each program with
its result. Exactly one thread runs at any moment and programs are resumed in admission order, so a run is as
deterministic as a sequential one. Python generators would avoid the threads, but would turn every strategy
inside out (each helper that reaches the engine would have to `yield from`); threads keep them readable, and
the hand-off costs microseconds against decode steps of tens of milliseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Cancelled", "Program"]


class Cancelled(BaseException):
    """Raised inside a program that the scheduler cancelled (its client went away): the program unwinds and its
    rows leave the batch at the next step. A `BaseException`, like asyncio's, so `except Exception` in strategy
    code does not swallow it."""


@dataclass
class _Raise:
    error: BaseException


class Program:
    """One program's thread and its hand-off with the scheduler (see the module docstring)."""

    def __init__(self, body: Callable[[], Any], back: threading.Semaphore, *, rows: int = 1, name: str = "") -> None:
        self.body = body
        self.rows = rows
        """Rows it is expected to hold at once (admission control counts these)."""
        self.name = name
        self.op: Any = None
        """The operation it waits for (None while it runs or before it starts)."""
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.cancelled = False
        self._reply: Any = None
        self._go = threading.Semaphore(0)
        self._back = back  # the scheduler's: released whenever the running program blocks or ends
        self._thread: threading.Thread | None = None
        self.views_engine: Any = None  # its `ProgramEngine` in batched mode

    @property
    def started(self) -> bool:
        return self._thread is not None

    # -- scheduler side ---------------------------------------------------------------------------------------
    def resume(self, reply: Any = None, error: BaseException | None = None) -> None:
        """Run the program until it posts its next operation or ends (called on the scheduler thread)."""
        self.op = None
        self._reply = _Raise(error) if error is not None else reply
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name=f"testtime-program-{self.name}", daemon=True)
            self._thread.start()
        else:
            self._go.release()
        self._back.acquire()

    def _main(self) -> None:
        try:
            self.result = self.body()
        except BaseException as exc:  # delivered to whoever waits for the program
            self.error = exc
        self.done = True
        self._back.release()

    # -- program side -----------------------------------------------------------------------------------------
    def wait(self, op: Any) -> Any:
        """Post `op` and block until the scheduler answers it (called on the program's thread)."""
        self.op = op
        self._back.release()
        self._go.acquire()
        reply, self._reply = self._reply, None
        if isinstance(reply, _Raise):
            raise reply.error
        return reply
