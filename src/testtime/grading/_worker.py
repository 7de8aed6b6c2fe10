"""A pool of math-verify worker processes, so a symbolic check can never hang its caller.

sympy can take minutes (or forever) on a hostile answer like `10^{10^{10}}`. math-verify's own timeout is
`signal.alarm`, which works only on the main thread (elsewhere it raises ValueError) and cannot stop C code.
So every symbolic check runs in a child process (`_child.py`): the child interrupts itself after `timeout`
seconds with SIGALRM, and if it has not answered `KILL_GRACE` seconds later the parent kills it and the next
call starts a fresh one. The child is started with `subprocess` and a JSON-lines pipe rather than
`multiprocessing`, whose spawn start method re-imports the caller's `__main__` script in the child (running
unguarded top-level code such as model loading) and whose fork start method is unsafe in a process that has
started torch threads.

Each thread takes an idle worker from the pool (or starts one, at most `MAX_WORKERS`), so calls from several
threads are safe and run in parallel. A call costs one pipe round trip (0.04 ms median, with math-verify's
work on already-parsed answers) plus parsing new answers (16 ms median for a new pair); starting a worker
takes about 0.6 s (importing sympy) and is not counted against `timeout`. Measured on 2 CPU cores.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

from .._errors import TesttimeError

__all__ = ["run_in_worker", "MAX_WORKERS", "KILL_GRACE"]

MAX_WORKERS = min(4, os.cpu_count() or 1)
"""Most worker processes alive at once (each holds sympy, about 100 MB)."""
KILL_GRACE = 0.5
"""Seconds past `timeout` that a worker may take to answer before it is killed."""
START_TIMEOUT = 120.0
"""Seconds a new worker may take to import math-verify (0.6 s on an idle machine)."""

_CHILD = Path(__file__).with_name("_child.py")


class _Worker:
    """One child process and a thread that moves its replies into a queue (so reads can time out)."""

    def __init__(self) -> None:
        # Run by path, not `-m testtime...`: importing the testtime package would import torch.
        code = f"import runpy; runpy.run_path({str(_CHILD)!r}, run_name='__main__')"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="ascii",
        )
        self._replies: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"grading-worker-{self.proc.pid}", daemon=True).start()
        ready = self._reply(START_TIMEOUT)
        if ready != "ready":
            self.kill()
            if ready is not None:
                why = ready
            elif self.alive:
                why = f"it did not start within {START_TIMEOUT:.0f} s"
            else:
                why = f"it exited with code {self.proc.returncode}"
            raise TesttimeError(
                f"the grading worker ({sys.executable}) failed: {why}; check that `math-verify` imports there"
            )

    def _read(self) -> None:
        # This thread alone reads and closes stdout (closing it from `kill` could break a blocked read).
        with self.proc.stdout:
            for line in self.proc.stdout:
                try:
                    self._replies.put(json.loads(line))
                except ValueError:
                    self._replies.put("error")
        self._replies.put(None)  # EOF: the child exited

    def _reply(self, timeout: float) -> str | None:
        try:
            return self._replies.get(timeout=timeout)
        except queue.Empty:
            return None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def compare(self, gold: str, pred: str, timeout: float) -> str:
        """"true", "false", "timeout" or "error". Afterwards the worker is dead if it had to be killed."""
        try:
            self.proc.stdin.write(json.dumps([gold, pred, timeout]) + "\n")
            self.proc.stdin.flush()
        except OSError:  # the child died between calls
            self.kill()
            return "error"
        reply = self._reply(min(timeout + KILL_GRACE, threading.TIMEOUT_MAX))
        if reply is None:
            stuck = self.alive
            self.kill()
            return "timeout" if stuck else "error"
        return reply

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
        self.proc.wait()
        try:
            self.proc.stdin.close()
        except OSError:  # a broken pipe to the dead child
            pass


class _Pool:
    def __init__(self, max_workers: int) -> None:
        self._max_workers = max_workers
        self._forget()

    def _forget(self) -> None:
        """Start empty. Also run in a forked child: the parent's workers (and its lock) are not ours to use."""
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self._max_workers)

    def run(self, gold: str, pred: str, timeout: float) -> str:
        with self._slots:
            with self._lock:
                worker = self._idle.pop() if self._idle else None
            if worker is None:
                worker = _Worker()  # outside the lock: starting takes about a second
                with self._lock:
                    self._all = [w for w in self._all if w.alive] + [worker]
            result = worker.compare(gold, pred, timeout)
            if worker.alive:
                with self._lock:
                    self._idle.append(worker)
            return result

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (tests use this to simulate a hung worker)."""
        with self._lock:
            return [w.proc.pid for w in self._all if w.alive]

    def close(self) -> None:
        with self._lock:
            workers, self._all, self._idle = self._all, [], []
        for worker in workers:
            worker.kill()


_pool = _Pool(MAX_WORKERS)
atexit.register(_pool.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_pool._forget)


def run_in_worker(gold: str, pred: str, timeout: float) -> str:
    """Compare `pred` with `gold` by math-verify in a worker: "true", "false", "timeout" or "error"."""
    return _pool.run(gold, pred, timeout)
