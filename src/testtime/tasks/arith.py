"""`arith`: multi-step arithmetic word problems, generated offline from a seed, in five difficulty levels.

Why a generated task: it needs no network or data file, takes milliseconds, and its difficulty is a dial,
so scaling curves (accuracy vs. samples per problem) can be drawn on a 135M model on a laptop CPU. The
levels are calibrated on the embedded model (SmolLM2-135M-Instruct) by `scripts/calibrate_arith.py`: its
greedy accuracy on the test split is 68/28/28/10/2% for levels 1..5 (50 problems each), leaving room for
voting and search to help.

A problem is a chain `start op1 k1 op2 k2 ...` over positive integers, told as a short story. `meta` holds
`start`, `ops` ([[op, k], ...] applied left to right), `answer`, `solution` (a worked solution in the
prompt's step format), `family` (the story kind) and `level`, so answers can be recomputed and checked.

Splits are disjoint *by construction*: every question text hashes to exactly one of train/dev/test, and
each split's generator drops texts that hash elsewhere, so no seed can put one question in two splits.
The prompt's few-shot examples are train-split problems of the same level from their own seed stream,
reserved so that no split ever emits them.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections.abc import Sequence, Set
from dataclasses import dataclass
from pathlib import Path

from .._errors import ValidationError
from ._arith_text import FAMILIES, NAMES, PRONOUNS
from ._problem import Problem
from ._prompts import ARITH_SYSTEM_PROMPT, build_messages

__all__ = [
    "ArithTask",
    "ArithLevel",
    "ARITH_LEVELS",
    "ARITH_SPLITS",
    "DEFAULT_NUM_SHOTS",
    "MAX_SHOTS",
    "DEFAULT_PER_LEVEL",
    "apply_op",
    "split_of",
    "generate",
    "few_shot_examples",
    "ARITH_FEW_SHOT",
]

ARITH_SPLITS = ("train", "dev", "test")
DEFAULT_NUM_SHOTS = 4
"""Few-shot examples per prompt: on dev level 1, 4 examples gave SmolLM2-135M 21/32 correct, 2 gave 8/32."""
MAX_SHOTS = 8
DEFAULT_PER_LEVEL = 100
"""Problems per level when `limit` is None (so 500 per split with all five levels)."""
_MAX_TRIES = 1000  # rejection sampling per problem; a level needing more than a few is mis-specified


@dataclass(frozen=True)
class ArithLevel:
    """How one difficulty level draws its chains. Ranges are inclusive."""

    num_ops: tuple[int, int] = (1, 1)
    """Number of operations in the chain, drawn uniformly from this range."""
    ops: str = "+-"
    """Operations to draw from: any of "+-*/"."""
    start: tuple[int, int] = (2, 20)
    """Range of the starting value."""
    operand: tuple[int, int] = (2, 10)
    """Range of the operand of "+" and "-" (from 2, so "gives 1 muffins" never needs a singular)."""
    factor: tuple[int, int] = (2, 5)
    """Range of the operand of "*" and "/" (division must come out exact, so "/" uses divisors in range)."""
    max_value: int = 1000
    """Largest running value allowed (keeps multiplications in mental-arithmetic range)."""
    required_ops: str = ""
    """Operations every chain must contain at least once (level 5 mixes "*" and "/")."""


# Calibrated on SmolLM2-135M-Instruct, greedy, with the default prompt (scripts/calibrate_arith.py; the
# table is in its docstring). The model adds well and subtracts badly, and every extra step compounds its
# errors, so the dial is: one "+", one "+"/"-", two "+", two "+"/"-", then long chains with "*" and "/".
ARITH_LEVELS: dict[int, ArithLevel] = {
    1: ArithLevel(num_ops=(1, 1), ops="+", start=(2, 20), operand=(2, 9), max_value=40),
    2: ArithLevel(num_ops=(1, 1), ops="+-", start=(5, 30), operand=(2, 15), max_value=60),
    3: ArithLevel(num_ops=(2, 2), ops="+", start=(3, 20), operand=(2, 9), max_value=50),
    4: ArithLevel(num_ops=(2, 2), ops="+-", start=(3, 15), operand=(2, 9), max_value=40),
    5: ArithLevel(
        num_ops=(4, 5),
        ops="+-*/",
        start=(5, 30),
        operand=(2, 15),
        factor=(2, 4),
        max_value=200,
        required_ops="*/",
    ),
}


def apply_op(value: int, op: str, operand: int) -> int:
    """One step of a chain; "/" must divide exactly (an invariant of the generator, hence `assert`)."""
    if op == "+":
        return value + operand
    if op == "-":
        return value - operand
    if op == "*":
        return value * operand
    assert op == "/" and value % operand == 0, (value, op, operand)
    return value // operand


def split_of(question: str) -> str:
    """The one split a question text belongs to (a stable hash, not Python's salted `hash`)."""
    digest = hashlib.sha256(question.encode()).digest()
    return ARITH_SPLITS[int.from_bytes(digest[:8], "big") % len(ARITH_SPLITS)]


@dataclass
class ArithTask:
    """The built-in generated task; `load_task("arith", ...)` builds one from its keyword fields."""

    num_shots: int = DEFAULT_NUM_SHOTS
    """Worked examples of the problem's level put before it as user/assistant turns (0 to 8; 0 disables)."""

    name = "arith"
    splits = ARITH_SPLITS

    def __post_init__(self) -> None:
        if not 0 <= self.num_shots <= MAX_SHOTS:
            raise ValidationError(
                f"`num_shots` must be in [0, {MAX_SHOTS}], got {self.num_shots}.",
                parameter="num_shots",
                value=self.num_shots,
            )

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
        """Generate problems, levels interleaved (L1, L2, ..., L5, L1, ...) so any `limit` stays balanced.

        `limit` caps the total; without it each level gets `DEFAULT_PER_LEVEL`. Problem `i` of a level is
        the same for every `limit`, so a larger run extends a smaller one.
        """
        if data is not None:
            raise ValidationError(
                f"task 'arith' is generated and reads no data file, got `data`={str(data)!r}; drop it, "
                "or use task 'jsonl' to load a file.",
                parameter="data",
                value=str(data),
            )
        levels = list(levels) if levels is not None else sorted(ARITH_LEVELS)
        per_level = DEFAULT_PER_LEVEL if limit is None else math.ceil(limit / max(len(levels), 1))
        system = ARITH_SYSTEM_PROMPT if system_prompt is None else system_prompt
        by_level = {lv: generate(split, lv, per_level, seed=seed) for lv in levels}
        problems = []
        for i in range(per_level):
            for lv in levels:
                question, meta = by_level[lv][i]
                problems.append(
                    Problem(
                        id=f"arith-{split}-L{lv}-{i:04d}",
                        question=question,
                        messages=build_messages(
                            question, system_prompt=system, few_shot=few_shot_examples(lv, self.num_shots)
                        ),
                        answer=str(meta["answer"]),
                        level=lv,
                        last_number_fallback=True,
                        meta=meta,
                    )
                )
        return problems if limit is None else problems[:limit]


def generate(split: str, level: int, count: int, *, seed: int = 0) -> list[tuple[str, dict]]:
    """`count` distinct (question, meta) pairs of one level, all hashing to `split`; deterministic in the args."""
    # A string seed is hashed with SHA-512 by `random.seed`, so the stream is stable across processes.
    rng = random.Random(f"arith/{split}/{seed}/L{level}")
    reserved = {q for q, _ in few_shot_examples(level, MAX_SHOTS)}
    return _distinct(rng, level, count, split=split, reserved=reserved)


@functools.cache
def few_shot_examples(level: int, num_shots: int) -> tuple[tuple[str, str], ...]:
    """Worked (question, solution) examples for prompts at `level`: train-split problems of that level.

    They come from their own seed stream and are reserved (no split's generator emits them), so they are
    never a dev or test question, nor a train question. Examples of the problem's own level, because the
    135M model copies the examples' shape: one-step examples before a one-step question, and so on.
    """
    rng = random.Random(f"arith-few-shot/L{level}")
    return tuple((q, meta["solution"]) for q, meta in _distinct(rng, level, num_shots, split="train"))


def _distinct(
    rng: random.Random, level: int, count: int, *, split: str, reserved: Set[str] = frozenset()
) -> list[tuple[str, dict]]:
    spec = ARITH_LEVELS[level]
    seen: set[str] = set()
    out = []
    while len(out) < count:
        for _ in range(_MAX_TRIES):
            question, meta = _draw(rng, spec)
            if question not in seen and question not in reserved and split_of(question) == split:
                break
        else:
            raise AssertionError(f"arith level {level}: no new question after {_MAX_TRIES} draws")
        seen.add(question)
        meta["level"] = level
        out.append((question, meta))
    return out


def _draw(rng: random.Random, spec: ArithLevel) -> tuple[str, dict]:
    """One random problem of a level: a valid chain, then its story and worked solution."""
    start, chain = _draw_chain(rng, spec)
    family_name = rng.choice(sorted(FAMILIES))
    family = FAMILIES[family_name]
    name, pronoun = rng.choice(NAMES)
    friend = rng.choice([n for n, _ in NAMES if n != name])
    item1, item = rng.choice(family.items)
    words = {"name": name, "friend": friend, "item": item, "item1": item1, **PRONOUNS[pronoun]}

    # The story as (sentence, step) pairs; `step` is the chain step the sentence tells, None for the opening.
    story: list[tuple[str, tuple[str, int] | None]] = []
    steps = list(chain)
    if steps[0][0] == "*" and rng.random() < 0.5:
        # "3 bags with 4 marbles in each" is the first multiplication, told in the opening sentence.
        story.append((rng.choice(family.start_product).format(n=start, k=steps[0][1], **words), steps[0]))
        steps = steps[1:]
    else:
        story.append((rng.choice(family.start).format(n=start, **words), None))
    grouped = bool(steps) and steps[-1][0] == "/" and bool(family.question_groups) and rng.random() < 0.5
    if grouped:
        # "packs them into bags of 6; how many bags?" is the last division, told before the question.
        steps, last = steps[:-1], steps[-1]
    used: set[str] = set()
    for step in steps:
        # Prefer a template not used yet in this story: "She spends $34 on a book. She spends $8 on a book."
        # reads like a bug.
        fresh = [t for t in family.steps[step[0]] if t not in used] or family.steps[step[0]]
        template = rng.choice(fresh)
        used.add(template)
        story.append((template.format(k=step[1], **words), step))
    if grouped:
        group_step, question = rng.choice(family.question_groups)
        story.append((group_step.format(k=last[1], **words), last))
    else:
        question = rng.choice(family.question)

    meta = {
        "start": start,
        "ops": [[op, k] for op, k in chain],
        "answer": _fold(start, chain),
        "solution": _solution(start, story),
        "family": family_name,
    }
    return " ".join([sentence for sentence, _ in story] + [question.format(**words)]), meta


def _fold(start: int, chain: Sequence[tuple[str, int]]) -> int:
    value = start
    for op, k in chain:
        value = apply_op(value, op, k)
    return value


_VERBS = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}


def _solution(start: int, story: list[tuple[str, tuple[str, int] | None]]) -> str:
    """The worked solution in the prompt's format: each step sentence restated with its calculation.

    "She buys 5 more apples, so we add: 12 + 5 = 17." -- one step per operation, blank lines between, then
    the boxed closing line. Restating the sentence lets a small model copy its way to the operation.
    """
    lines = []
    value = start
    for sentence, step in story:
        if step is None:
            continue
        op, k = step
        new = apply_op(value, op, k)
        lines.append(f"{sentence.rstrip('.')}, so we {_VERBS[op]}: {value} {op} {k} = {new}.")
        value = new
    lines.append(f"Therefore, the final answer is: $\\boxed{{{value}}}$.")
    return "\n\n".join(lines)


def _draw_chain(rng: random.Random, spec: ArithLevel) -> tuple[int, list[tuple[str, int]]]:
    """A start value and operations whose running values stay in [1, max_value] with exact divisions."""
    for _ in range(_MAX_TRIES):
        num_ops = rng.randint(*spec.num_ops)
        ops = [rng.choice(spec.ops) for _ in range(num_ops)]
        if any(op not in ops for op in spec.required_ops):
            continue
        start = value = rng.randint(*spec.start)
        chain = []
        for op in ops:
            k = _draw_operand(rng, spec, value, op)
            if k is None:
                break
            chain.append((op, k))
            value = apply_op(value, op, k)
        else:
            return start, chain
    raise AssertionError(f"no valid chain for {spec} after {_MAX_TRIES} tries")


def _draw_operand(rng: random.Random, spec: ArithLevel, value: int, op: str) -> int | None:
    """An operand for `value op k` keeping the result in [1, max_value], or None when there is none."""
    if op == "+":
        choices = range(spec.operand[0], min(spec.operand[1], spec.max_value - value) + 1)
    elif op == "-":
        choices = range(spec.operand[0], min(spec.operand[1], value - 1) + 1)
    elif op == "*":
        choices = range(spec.factor[0], min(spec.factor[1], spec.max_value // value) + 1)
    else:
        choices = [k for k in range(spec.factor[0], spec.factor[1] + 1) if value % k == 0 and value > k]
    return rng.choice(choices) if len(choices) else None


ARITH_FEW_SHOT: tuple[tuple[str, str], ...] = tuple(few_shot_examples(level, 1)[0] for level in (1, 2, 3, 4))
"""One worked example from each of levels 1-4, for arith-style questions of unknown level (`testtime solve`);
`load_task("arith")` uses `few_shot_examples` of each problem's own level instead."""
