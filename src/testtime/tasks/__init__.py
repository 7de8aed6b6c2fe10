"""Tasks: where problems come from (a generated set, MATH-500, GSM8K, any JSONL file) and how they are prompted.

    from testtime.tasks import load_task
    problems = load_task("arith", split="dev", limit=50)
    problems = load_task("math500", data="data/math500.jsonl", levels=[1, 2])

Every task returns `Problem`s with chat `messages` ready for an engine and, when known, a gold `answer`.
"""

from ._problem import Problem
from ._prompts import ARITH_SYSTEM_PROMPT, GSM8K_SYSTEM_PROMPT, MATH_SYSTEM_PROMPT, build_messages
from ._registry import TASKS, load_task
from .arith import ARITH_FEW_SHOT, ARITH_LEVELS, ArithLevel, ArithTask
from .gsm8k import Gsm8kTask
from .jsonl import JsonlTask
from .math500 import Math500Task

__all__ = [
    "Problem",
    "TASKS",
    "load_task",
    "ArithTask",
    "ArithLevel",
    "ARITH_LEVELS",
    "Math500Task",
    "Gsm8kTask",
    "JsonlTask",
    "MATH_SYSTEM_PROMPT",
    "GSM8K_SYSTEM_PROMPT",
    "ARITH_SYSTEM_PROMPT",
    "ARITH_FEW_SHOT",
    "build_messages",
]
