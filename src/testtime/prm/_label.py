"""Step labels by Monte-Carlo rollouts (Math-Shepherd, Wang et al. 2024, sec. 3.2: "soft estimation").

For each training problem the generator samples `num_samples` solutions. Each solution is split into steps
(`split_steps`, blank-line separated, as the prompts ask). A step prefix s_1..s_k (k < S) gets the label
    value(s_1..s_k) = (1/m) * #{j : completion_j from the prefix reaches the gold answer},
with m = `num_rollouts` completions sampled from the prefix as a partial assistant message. The last step's
label is the solution's own correctness (its "completion" is itself). Identical prefixes of one problem
(common: small models often open the same way) are rolled out once. Rollouts fork the sample's row in a
live batch, so no prefix is prefilled twice.

Rollouts are the expensive part, so labels are appended to a JSONL file one problem at a time (fsynced);
rerunning with the same file skips problems already labelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._errors import DataError, check
from ..engines import Request, SamplingParams
from ..eval import ResultsFile
from ..grading import extract_answer, is_equiv
from ..scorers import STEP_SEPARATOR, split_steps
from ..strategies import problem_seed
from ..tasks import Problem

__all__ = ["LabelParams", "label_problems", "is_correct", "prefix_key"]


@dataclass
class LabelParams:
    """How solutions are sampled and labelled."""

    num_samples: int = 4
    """Solutions sampled per problem, >= 1."""
    num_rollouts: int = 4
    """Completions per step prefix (m in the value estimate), >= 1."""
    temperature: float = 0.8
    """Sampling temperature of solutions and rollouts (the strategies' default)."""
    max_tokens: int = 384
    """New tokens per solution or rollout (arith's default)."""
    seed: int = 0
    """Seeds every sample and rollout (per problem and prefix, so labels do not depend on batching)."""

    def __post_init__(self) -> None:
        check(isinstance(self.num_samples, int) and self.num_samples >= 1, f"`num_samples` must be an integer >= 1, got {self.num_samples!r}.", parameter="num_samples", value=self.num_samples)
        check(isinstance(self.num_rollouts, int) and self.num_rollouts >= 1, f"`num_rollouts` must be an integer >= 1, got {self.num_rollouts!r}.", parameter="num_rollouts", value=self.num_rollouts)


def is_correct(problem: Problem, text: str) -> bool:
    pred = extract_answer(text, last_number=problem.last_number_fallback)
    return pred is not None and problem.answer is not None and is_equiv(problem.answer, pred)


ADVANCE_TOKENS = 8  # tokens per advance: a row that reaches a step boundary waits at most this long for the others


def prefix_key(text: str) -> str:
    """The step prefix a row's text stands for: everything up to and including its last separator (a token
    that completes the separator may carry the next step's first characters; they belong to the rollouts)."""
    at = text.rfind(STEP_SEPARATOR)
    return text[: at + len(STEP_SEPARATOR)] if at >= 0 else ""


def _label_chunk(engine, problems: Sequence[Problem], params: LabelParams) -> list[dict]:
    """Sample solutions and roll out every new step prefix, forking rows of one live batch.

    A sample row that reaches a step boundary is duplicated `num_rollouts` times (`reorder`); the copies run
    to the end as that prefix's completions while the original goes on to its next step. Forking a row
    reuses its KV cache, so the long few-shot prompt is prefilled once per problem, not once per prefix.
    """
    batch = engine.start(
        [Request(messages=p.chat()) for p in problems],
        [SamplingParams(n=params.num_samples, temperature=params.temperature, max_tokens=params.max_tokens, seed=problem_seed(params.seed, f"{p.id}/sample")) for p in problems],
    )
    # Per row: (problem index, sample index, None) for a sample, (problem index, None, prefix) for a rollout.
    tags: list[tuple[int, int | None, str | None]] = [(i, j, None) for i in range(len(problems)) for j in range(params.num_samples)]
    samples: list[list[dict | None]] = [[None] * params.num_samples for _ in problems]
    hits: list[dict[str, list[bool]]] = [{} for _ in problems]
    while len(batch):
        outs = batch.advance(ADVANCE_TOKENS, stop=[STEP_SEPARATOR])
        order, new_tags = [], []
        for b, (o, (i, j, prefix)) in enumerate(zip(outs, tags)):
            if o.finished:
                c = batch.completion(b)
                if prefix is None:
                    samples[i][j] = {"text": c.text, "finish_reason": c.finish_reason, "num_steps": len(split_steps(c.text)), "correct": is_correct(problems[i], c.text)}
                else:
                    hits[i][prefix].append(is_correct(problems[i], c.text))
                continue
            order.append(b)
            new_tags.append((i, j, prefix))
            if prefix is None:
                # Every new complete prefix, also one whose separator straddled two advances (the engine looks
                # for stop strings within one advance). Such a row is a few tokens past its boundary; forking it
                # there still estimates the prefix's value without bias (the extra tokens are one draw of the
                # continuation, shared by the m rollouts).
                key = prefix_key(batch.completion(b).text)
                if split_steps(key) and key not in hits[i]:
                    hits[i][key] = []
                    order += [b] * params.num_rollouts  # duplicates sample their own continuations
                    new_tags += [(i, None, key)] * params.num_rollouts
        if order != list(range(len(batch))):
            batch.reorder(order)
        tags = new_tags
    rows = []
    for i, p in enumerate(problems):
        values = {k: sum(v) / len(v) for k, v in hits[i].items()}
        rows.append({"problem_id": p.id, "level": p.level, "answer": p.answer, "samples": samples[i], "prefix_values": values})
    return rows


def label_problems(
    engine,
    problems: Sequence[Problem],
    path: str | Path,
    params: LabelParams | None = None,
    *,
    chunk_size: int = 8,
    use_tqdm: bool = True,
) -> list[dict]:
    """Sample and label every problem, appending one row per problem to `path`; returns all rows of `problems`.

    Rows already in `path` are kept and not redone (resume). A row holds the sampled solutions (text,
    correctness, number of steps) and `prefix_values`: step prefix text (ending in the separator) -> value.
    """
    params = params or LabelParams()
    check(isinstance(chunk_size, int) and not isinstance(chunk_size, bool) and chunk_size >= 1, f"`chunk_size` must be an integer >= 1, got {chunk_size!r}.", parameter="chunk_size", value=chunk_size)
    for p in problems:
        if p.answer is None:
            raise DataError(f"problem {p.id} has no gold answer; PRM labels need a task with gold answers.")
    file = ResultsFile(path)
    have = {row["problem_id"]: row for row in file.load()}
    todo = [p for p in problems if p.id not in have]
    bar = None
    if use_tqdm:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc="label", unit="problem", dynamic_ncols=True)
    for s in range(0, len(todo), chunk_size):
        chunk = todo[s : s + chunk_size]
        rows = _label_chunk(engine, chunk, params)
        file.append(rows)
        have.update((r["problem_id"], r) for r in rows)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return [have[p.id] for p in problems]
