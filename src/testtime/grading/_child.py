"""The grading worker process: compares two answers with math-verify, one JSON request per line.

Run as a script by `_worker.py`, never imported by testtime: it needs only the standard library and
math-verify, so starting it does not import torch. Each request is `[gold, pred, timeout]` on stdin; each
reply is one of "true", "false", "timeout", "error" on the protocol channel (the original stdout; anything
sympy prints goes to stderr). A job that runs past `timeout` is interrupted here by SIGALRM, which works
because this is the main thread of its own process; a job stuck in C code ignores the signal and is killed
by the parent instead.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from functools import lru_cache

_CACHE_SIZE = 4096  # parsed answers; voting re-parses the same representatives many times


class _Timeout(BaseException):
    """Raised by SIGALRM. A BaseException, so math-verify's `except Exception` does not swallow it."""


def _on_alarm(signum, frame):
    raise _Timeout


# Without SIGALRM (Windows) every timeout ends with the parent killing the worker, which still works.
_HAS_ALARM = hasattr(signal, "setitimer")


def _set_alarm(seconds: float) -> None:
    if _HAS_ALARM:
        signal.setitimer(signal.ITIMER_REAL, seconds)


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w", encoding="ascii")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.disable(logging.CRITICAL)  # math-verify logs a warning per failed parse
    try:
        from math_verify import parse, verify
    except Exception as exc:  # reported to the parent, which raises a TesttimeError naming it
        _send(protocol, f"error: cannot import math_verify ({type(exc).__name__}: {exc})")
        return

    # Timeouts are ours (below): passing None turns off math-verify's own signal.alarm, which takes whole
    # seconds only and would restart the alarm once per parsed expression.
    @lru_cache(maxsize=_CACHE_SIZE)
    def parse_gold(gold: str) -> list:
        # Wrapped, so the LaTeX extractor takes the whole gold; bare, `parse("3\\sqrt{13}")` returns [3].
        return parse("\\boxed{" + gold + "}", parsing_timeout=None)

    @lru_cache(maxsize=_CACHE_SIZE)
    def parse_pred(pred: str) -> list:
        return parse("\\boxed{" + pred + "}", parsing_timeout=None) or parse(pred, parsing_timeout=None)

    def compare(gold: str, pred: str, timeout: float) -> str:
        try:
            _set_alarm(timeout)
            try:
                gold_parsed, pred_parsed = parse_gold(gold), parse_pred(pred)
                if not gold_parsed or not pred_parsed:
                    return "false"
                # allow_set_relation_comp: a predicted inequality may answer an interval gold ("1 < x \\le 2"
                # for "(1,2]"); by default math-verify allows that only the other way round.
                is_equal = verify(
                    gold_parsed, pred_parsed, timeout_seconds=None, allow_set_relation_comp=True
                )
                return "true" if is_equal else "false"
            finally:
                _set_alarm(0)
        except _Timeout:  # also when the alarm lands inside the `finally` above
            return "timeout"
        except Exception:
            return "error"

    if _HAS_ALARM:
        signal.signal(signal.SIGALRM, _on_alarm)
    _send(protocol, "ready")
    for line in sys.stdin:
        gold, pred, timeout = json.loads(line)
        _send(protocol, compare(gold, pred, timeout))


def _send(protocol, message: str) -> None:
    protocol.write(json.dumps(message) + "\n")
    protocol.flush()


if __name__ == "__main__":
    main()
