"""Grading, part 3: symbolic checks are bounded by `timeout` on any thread. A pathological comparison from a
worker thread returns False, a hung worker process is killed and replaced, threads share the pool safely,
and a timed-out verdict is cached."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import testtime.grading._verify as verify_module
from testtime.grading import DEFAULT_TIMEOUT, is_equiv
from testtime.grading._verify import symbolic_equiv
from testtime.grading._worker import KILL_GRACE, _pool, run_in_worker

# sympy runs for minutes on this (it ran > 120 s unbounded when we tried): 10^(10^10) has 10^10 digits.
PATHOLOGICAL = ("10^{10^{10}}", "1")


def run_in_thread(fn):
    """Run `fn` on a new (non-main) thread; return its result and the seconds it took."""
    out = {}

    def target():
        start = time.perf_counter()
        out["result"] = fn()
        out["seconds"] = time.perf_counter() - start

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the call did not return within 60 s"
    return out["result"], out["seconds"]


def test_math_verify_timeout_fails_off_the_main_thread():
    # Why the worker exists: math-verify 0.9's own timeout uses signal.alarm, which raises off the main thread.
    from math_verify import parse

    def parse_with_its_timeout():
        try:
            parse("$1$", parsing_timeout=1)
        except ValueError as exc:
            return str(exc)
        return "no error"

    message, _ = run_in_thread(parse_with_its_timeout)
    assert "threaded environment" in message


def test_pathological_comparison_times_out_off_the_main_thread():
    assert symbolic_equiv("1", "1")  # start a worker first: start-up is not part of the timeout
    result, seconds = run_in_thread(lambda: is_equiv(*PATHOLOGICAL, timeout=0.2))
    assert result is False
    # Generous bound, but below the 5 s default: the 0.2 s limit (plus at most KILL_GRACE) was applied.
    assert seconds < DEFAULT_TIMEOUT
    assert KILL_GRACE < DEFAULT_TIMEOUT
    # The worker recovered (interrupted by its own alarm, or killed and restarted).
    result, _ = run_in_thread(lambda: is_equiv("\\frac{1}{2}", "0.5"))
    assert result is True


def test_timed_out_verdict_is_cached(monkeypatch):
    assert is_equiv(*PATHOLOGICAL, timeout=0.3) is False

    def no_worker(*args):
        raise AssertionError("the worker was called again")

    monkeypatch.setattr(verify_module, "run_in_worker", no_worker)
    assert is_equiv(*PATHOLOGICAL, timeout=0.3) is False


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP to freeze a worker")
def test_hung_worker_is_killed_and_replaced():
    # A worker stuck in C code ignores its alarm; SIGSTOP freezes one the same way. The caller must get
    # "timeout" after timeout + KILL_GRACE, and the next call a fresh worker.
    _pool.close()
    assert symbolic_equiv("2", "2")
    [frozen] = _pool.worker_pids()
    os.kill(frozen, signal.SIGSTOP)
    try:
        result, seconds = run_in_thread(lambda: run_in_worker("\\frac{1}{3}", "\\frac{2}{6}", 0.1))
    finally:
        try:
            os.kill(frozen, signal.SIGCONT)
        except ProcessLookupError:  # already killed, as it should be
            pass
    assert result == "timeout"
    assert seconds < DEFAULT_TIMEOUT
    assert _pool.worker_pids() == []
    result, _ = run_in_thread(lambda: run_in_worker("\\frac{1}{3}", "\\frac{2}{6}", 5.0))
    assert result == "true"
    [fresh] = _pool.worker_pids()
    assert fresh != frozen


def test_threads_share_the_pool():
    pairs = [
        ("3\\sqrt{13}", "\\sqrt{117}", True),
        ("\\{1,2\\}", "\\{2,1\\}", True),
        ("(1,2)", "(2,1)", False),
        ("x^2+2x+1", "(x+1)^2", True),
        ("2\\pi", "\\pi", False),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
    ] * 3
    results = [None] * len(pairs)

    def work(i):
        gold, pred, _ = pairs[i]
        results[i] = symbolic_equiv(gold, pred)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(pairs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [expected for _, _, expected in pairs]
