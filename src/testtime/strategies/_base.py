"""Machinery every strategy shares: per-problem seeds, candidate extraction, scoring, and compute accounting.

Strategies see only the engine and scorer protocols, so every backend runs every strategy.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from .._errors import ValidationError, check, problem_context
from ..engines import Completion, Engine, EngineUsage, EngineView, Request, SamplingParams
from ..grading import extract_answer
from ..scheduler import Scheduler
from ..scorers import REDUCTIONS, LogprobScorer, Scorer, ScoreRequest, ScorerUsage, reduce_scores
from ..tasks import Problem
from ._types import Candidate, SolveResult, Usage

__all__ = ["Strategy", "SamplingStrategy", "DEFAULT_SAMPLING", "check_n", "problem_seed", "split_usage", "to_candidate", "with_logprobs"]

DEFAULT_SAMPLING = SamplingParams(temperature=0.8, top_p=1.0, max_tokens=512)
"""Generation settings of the sampling strategies (temperature 0.8 as in search-and-learn's recipes)."""


def problem_seed(seed: int, problem_id: str) -> int:
    """A problem's own seed: its candidates do not depend on which other problems share the batch."""
    digest = hashlib.blake2b(f"{seed}:{problem_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def with_logprobs(sampling: SamplingParams, k: int | None) -> SamplingParams:
    """`sampling` asking for at least k top logprobs per token (k None: unchanged)."""
    if k is None or (sampling.logprobs is not None and sampling.logprobs >= k):
        return sampling
    return replace(sampling, logprobs=k)


def check_n(n) -> None:
    """A params class's budget `n`: an integer >= 1 (True is not one)."""
    check(isinstance(n, int) and not isinstance(n, bool) and n >= 1, f"`n` must be an integer >= 1, got {n!r}.", parameter="n", value=n)


def in_groups(items: Sequence, size: int) -> list[list]:
    """`items` in consecutive groups of `size` (the last may be shorter): problems that share one live batch."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def as_problem_list(problems: Problem | Sequence[Problem]) -> list[Problem]:
    items = [problems] if isinstance(problems, Problem) else list(problems)
    for i, p in enumerate(items):
        if not isinstance(p, Problem):
            raise ValidationError(f"problem {i} is a {type(p).__name__}, expected testtime.tasks.Problem.", parameter="problems")
    return items


def to_candidate(problem: Problem, c: Completion, index: int) -> Candidate:
    return Candidate(
        index=index,
        text=c.text,
        num_tokens=c.num_tokens,
        finish_reason=c.finish_reason,
        cumulative_logprob=c.cumulative_logprob,
        answer=extract_answer(c.text, last_number=problem.last_number_fallback),
        logprobs=c.logprobs,
    )


def split_usage(
    problems: Sequence[Problem],
    engine_delta: EngineUsage,
    scorer_delta: ScorerUsage | None,
    wall_time: float,
    prompt_tokens: Sequence[int],
    scored_chars: Sequence[int],
    generated: Sequence[int],
) -> list[Usage]:
    """Per-problem usage from one batched run: exact generated tokens; prefill and the scorer's shared-prompt
    tokens split by prompt size, the rest of the scoring by candidate text size, wall time evenly; every call
    counts for every problem in the batch."""
    n = len(problems)
    total_prompt = sum(prompt_tokens) or 1
    total_scored = sum(scored_chars) or 1
    prefix = scorer_delta.num_prefix_tokens if scorer_delta else 0
    per_candidate = scorer_delta.num_tokens - prefix if scorer_delta else 0
    out = []
    for i in range(n):
        scored_prefix = round(prefix * prompt_tokens[i] / total_prompt)
        out.append(
            Usage(
                num_prefill_tokens=round(engine_delta.num_prefill_tokens * prompt_tokens[i] / total_prompt),
                num_cached_prompt_tokens=round(engine_delta.num_cached_prompt_tokens * prompt_tokens[i] / total_prompt),
                num_generated_tokens=generated[i],
                num_scored_tokens=scored_prefix + round(per_candidate * scored_chars[i] / total_scored),
                num_scored_prefix_tokens=scored_prefix,
                num_engine_calls=engine_delta.num_calls,
                num_scorer_calls=scorer_delta.num_calls if scorer_delta else 0,
                wall_time=wall_time / max(n, 1),
            )
        )
    return out


class Strategy:
    """Base of every strategy: `solve(problems) -> list[SolveResult]`, in input order, at the budget
    `params.n`; `at_budget(n)` is the same strategy at another budget."""

    name: ClassVar[str] = ""
    params_class: ClassVar[type]
    """The strategy's params dataclass: its knobs and its budget `n` (the one place the budget lives)."""
    needs_scorer: ClassVar[bool] = False
    needs_policy: ClassVar[bool] = False
    """Built with a compute-optimal `policy=` (what `make_strategy` passes it; `optimal`)."""
    fixed_budget: ClassVar[int | None] = None
    """The one budget it runs at whatever a caller that builds every strategy at one budget asks
    (`make_strategy(n=...)`, the eval's budgets; greedy: 1, more samples would all be the same)."""
    streams_one_sample: ClassVar[bool] = False
    """At budget 1 its reply is the text of its one `engine.generate` sample, as generated: a server can stream
    that sample token by token (`testtime serve`, `stream: true`)."""

    def __init__(self, engine: Engine, scorer: Scorer | None = None, *, params: Any = None, sampling: SamplingParams = DEFAULT_SAMPLING, seed: int = 0) -> None:
        if self.needs_scorer and scorer is None:
            raise ValidationError(f"strategy {self.name!r} ranks candidates and needs a scorer (--scorer).", parameter="scorer")
        check(
            sampling.n == 1,
            f"`n` of a strategy's sampling must be 1, got {sampling.n}: the budget is the params' `n` (params=...(n={sampling.n})) or `strategy.at_budget({sampling.n})`.",
            parameter="n",
            value=sampling.n,
        )
        params = self.params_class() if params is None else params
        if not isinstance(params, self.params_class):
            raise ValidationError(f"strategy {self.name or type(self).__name__!r} takes {self.params_class.__name__}, got {type(params).__name__}.", parameter="params", value=params)
        self.params = params
        self.engine = engine
        self.scorer = scorer
        # A scorer that reads logprobs (the confidence family) gets them from every candidate this strategy samples.
        self.sampling = with_logprobs(sampling, scorer.num_logprobs if isinstance(scorer, LogprobScorer) else None)
        self.seed = seed
        self.use_tqdm = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(engine={self.engine!r}, scorer={type(self.scorer).__name__ if self.scorer else None})"

    def at_budget(self, n: int | str) -> Strategy:
        """This strategy at budget n: a shallow copy (same engine, scorer, sampling and seed) whose params are
        `replace(self.params, n=n)`, validated by the params class; this one is unchanged. (So a constructor must
        not derive state from `params.n`: the copy would keep the old one.)"""
        params = replace(self.params, n=n)
        out = copy.copy(self)
        out.params = params
        return out

    def solve(self, problems: Problem | Sequence[Problem]) -> list[SolveResult]:
        """Results in input order, at the budget `params.n`. Each problem runs as its own program on one
        `Scheduler`, which merges their decode steps and scorer calls (a problem whose step ends goes on while the
        others decode); engines the scheduler cannot merge on (remote ones) get all problems in one `solve_batch`.
        Same candidates either way."""
        probs = as_problem_list(problems)
        if len(probs) <= 1 or isinstance(self.engine, EngineView):  # one problem, or already inside a program
            return self.solve_batch(probs)
        scheduler = Scheduler(self.engine, self.scorer)
        if not scheduler.batched:
            return self.solve_batch(probs)
        return solve_on(scheduler, self, probs)

    def solve_batch(self, problems: Problem | Sequence[Problem]) -> list[SolveResult]:
        """Solve `problems` together on this strategy's engine: the body of a scheduler program (one problem),
        and the whole run on engines the scheduler cannot merge on."""
        raise NotImplementedError

    def rows_needed(self) -> int:
        """Rows one problem holds at once (about): what the scheduler admits programs by."""
        n = self.params.n
        return n if isinstance(n, int) else 1  # "auto" sizes (SpR's n) are known only once it runs

    def absorb(self, program_copy: Strategy) -> None:
        """Take over what a program's copy of this strategy recorded about its problem (after `solve`). Rebinds
        rather than mutates, so a copy from `at_budget` never writes into the strategy it came from."""


def solve_on(scheduler: Scheduler, strategy: Strategy, problems: list[Problem]) -> list[SolveResult]:
    """Each problem as a program running a copy of `strategy` on the scheduler's views; results in input order,
    wall time split evenly (as a batched run reports it), what the copies recorded absorbed in order."""
    copies: list[Strategy | None] = [None] * len(problems)

    def program(i: int, p: Problem):
        def body(engine, scorer):
            mine = copy.copy(strategy)
            mine.engine, mine.scorer, mine.use_tqdm = engine, scorer if strategy.scorer is not None else None, False
            copies[i] = mine
            return mine.solve_batch([p])[0]

        return body

    t0 = time.perf_counter()
    rows = strategy.rows_needed()
    scheduler.reserve_rows = max(scheduler.reserve_rows, min(scheduler.max_rows, rows * len(problems)))  # allocated once
    bar = progress_bar(len(problems), strategy.use_tqdm, strategy.name)
    handles = [scheduler.submit(program(i, p), rows=rows, name=p.id) for i, p in enumerate(problems)]
    if bar is not None:
        for h in handles:
            h.add_done_callback(lambda _h: bar.update(1))
    try:
        scheduler.run(handles)
    finally:
        if bar is not None:
            bar.close()
    results = [h.result() for h in handles]
    wall = time.perf_counter() - t0
    for r in results:
        r.usage.wall_time = wall / len(problems)
    for c in copies:
        strategy.absorb(c)
    return results


def progress_bar(total: int, use_tqdm, name: str):
    """A bar of problems done: `use_tqdm` True, or the bar's factory (as `Engine.generate` takes it)."""
    if not use_tqdm:
        return None
    if callable(use_tqdm):
        make = use_tqdm
    else:
        from tqdm.auto import tqdm as make

    return make(total=total, desc=name, unit="problem", dynamic_ncols=True)


@dataclass
class SamplingStrategyParams:
    """Knobs of the independent-sampling strategies."""

    n: int = 16
    """Candidates sampled per problem (the budget), >= 1."""
    reduction: str = "last"
    """How per-step scores become one: "last", "min", "prod" or "mean"."""

    def __post_init__(self) -> None:
        check_n(self.n)
        check(self.reduction in REDUCTIONS, f"`reduction` must be one of {', '.join(REDUCTIONS)}, got {self.reduction!r}.", parameter="reduction", value=self.reduction)


class SamplingStrategy(Strategy):
    """Sample n independent candidates per problem, then `select` one. Because candidates are independent,
    the result at budget m < n is `select` over the first m candidates (the eval uses this)."""

    params_class = SamplingStrategyParams
    streams_one_sample = True

    def select(self, candidates: Sequence[Candidate]) -> int | None:
        raise NotImplementedError

    def sample(self, problems: Sequence[Problem], *, scorer: Scorer | None = None, sampling: SamplingParams | None = None) -> list[SolveResult]:
        """`params.n` scored candidates per problem, nothing selected yet (shared by every sampling strategy; the
        eval passes one `sampling` that asks for what every strategy sharing the run needs)."""
        n = self.params.n
        t0 = time.perf_counter()
        e0 = self.engine.usage.copy()
        requests = [Request(messages=p.chat()) for p in problems]
        sampling = sampling or self.sampling
        if isinstance(scorer, LogprobScorer):
            sampling = with_logprobs(sampling, scorer.num_logprobs)
        params = [replace(sampling, n=n, seed=problem_seed(self.seed, p.id)) for p in problems]
        with problem_context([p.id for p in problems]):  # "request 3: prompt too long" names the problem
            outputs = self.engine.generate(requests, params, use_tqdm=self.use_tqdm)
        results = [
            SolveResult(problem_id=p.id, strategy=self.name, candidates=[to_candidate(p, c, i) for i, c in enumerate(o.completions)])
            for p, o in zip(problems, outputs)
        ]
        engine_delta = self.engine.usage - e0
        scorer_delta = None
        if scorer is not None:
            s0 = scorer.usage.copy()
            reqs = [
                ScoreRequest(
                    question=p.question,
                    candidates=[c.text for c in r.candidates],
                    answer=p.answer,
                    last_number_fallback=p.last_number_fallback,
                    messages=p.chat(),
                    logprobs=[c.logprobs for c in r.candidates],
                )
                for p, r in zip(problems, results)
            ]
            for r, scores in zip(results, scorer.score(reqs)):
                for c, s in zip(r.candidates, scores):
                    c.scores = list(s)
                    c.score = reduce_scores(s, self.params.reduction)
            scorer_delta = scorer.usage - s0
        usages = split_usage(
            problems,
            engine_delta,
            scorer_delta,
            time.perf_counter() - t0,
            prompt_tokens=[o.num_prompt_tokens for o in outputs],
            scored_chars=[sum(len(c.text) for c in r.candidates) for r in results],
            generated=[sum(c.num_tokens for c in r.candidates) for r in results],
        )
        for r, u in zip(results, usages):
            r.usage = u
        return results

    def choose(self, result: SolveResult, n: int | None = None) -> SolveResult:
        """`result` with the selection made over its first n candidates (all if None)."""
        cands = result.candidates if n is None else result.candidates[:n]
        sel = self.select(cands)
        return replace(result, strategy=self.name, candidates=cands, selected=sel, answer=None if sel is None else cands[sel].answer)

    def solve_batch(self, problems: Problem | Sequence[Problem]) -> list[SolveResult]:
        scorer = self.scorer if self.needs_scorer else None
        return [self.choose(r) for r in self.sample(as_problem_list(problems), scorer=scorer)]
