"""The machinery beam search, DVTS and particle filtering share: a step-synchronous search over one live batch.

Every live path of every problem in the batch is one row of a single `LiveBatch`. One iteration is:

1. one `advance` to the next step boundary for all rows of all problems (one engine call),
2. optionally k greedy lookahead steps for the unfinished rows (one extra live batch, started from text),
3. one `score` call for all rows of the problems that are ready (one scorer call),
4. per problem, the strategy's `update` rule says which rows continue, which are duplicated (children), and
   which finished rows join the problem's pool of final candidates,
5. one `reorder` of the batch: kept prefixes are never re-prefilled on the in-process engine.

Problems join the batch while there is room (`max_rows`) and leave it when their search ends, so the batch
stays full like the continuous batching of `generate`. Each problem counts its own iterations; on its last
one (`max_iterations`) its rows keep advancing, unscored, until they finish (the reference's "last iteration
generates to EOS", done without a per-row stop list, which the live batch does not have).

Compute is charged to the problem that caused it: generated tokens exactly (per row), prefill and scorer
tokens split over the problems of each call in proportion to their text, calls counted for the problems that
took part in them, wall time split evenly.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

from .._errors import check
from ..engines import BatchSizedEngine, Completion, Engine, EngineUsage, Request, SamplingParams
from ..scorers import REDUCTIONS, STEP_SEPARATOR, LogprobScorer, Scorer, ScoreRequest, reduce_scores
from ..tasks import Problem
from ._base import (
    DEFAULT_SAMPLING,
    Strategy,
    as_problem_list,
    check_n,
    problem_seed,
    progress_bar,
    to_candidate,
)
from ._live_scores import PARTIAL_SCORES, live_scorer
from ._select import best_of_n, majority_vote, weighted_vote
from ._types import Candidate, SolveResult, Usage

__all__ = ["StepSearchParams", "StepSearch", "StepRow", "SearchState", "SELECTIONS", "DEFAULT_MAX_ROWS"]

SELECTIONS = {"best": best_of_n, "weighted": weighted_vote, "majority": majority_vote}
"""How the final answer is picked from a search's completed candidates."""

DEFAULT_MAX_ROWS = 64
"""Rows in the live batch when the engine does not say (`TransformersEngine.max_batch_size`)."""

DEFAULT_MAX_STEP_TOKENS = 32
"""Arith steps of the embedded model: median 23 tokens, p90 49, p99 167. Cut at 32, a 64-row step keeps ~70%
of its decoded row-steps useful (vs ~18% uncut), for ~1.4x the iterations."""


@dataclass
class StepSearchParams:
    """Knobs every step-level search has."""

    n: int = 16
    """Paths alive per step per problem (the budget), >= 1."""
    reduction: str = "last"
    """How a path's per-step scores become the one number it is ranked by: "last", "min", "prod" or "mean"."""
    select: str = "best"
    """Final answer from the completed candidates: "best" (highest reduced score), "weighted" (answer class with
    the largest score sum) or "majority" (most frequent answer)."""
    step_separator: str = STEP_SEPARATOR
    """A step is the text up to and including this string (the prompts ask for blank lines between steps)."""
    step_tokens: int = 0
    """> 0: a step is this many tokens instead of text up to `step_separator`; 0 uses the separator."""
    max_step_tokens: int = DEFAULT_MAX_STEP_TOKENS
    """With the separator: a step also ends after this many tokens; 0 never cuts a step (the reference's rule).
    All rows advance together, so one long step would keep every other row idle until it ends (see
    BENCHMARKS.md: without a cap, 17% of decoded row-steps were useful on arith, 64 rows)."""
    max_iterations: int = 40
    """Steps per path at most; the last one generates to the end of the solution. >= 1."""
    max_rows: int = 0
    """Rows decoded together across problems; 0 uses the engine's `max_batch_size` (64 if it has none)."""
    partial_scores: str = "auto"
    """How each step is scored: "text" (the scorer reads prompt and path), "hidden" (a head on the generator,
    like the built-in PRM, reads the live batch's hidden states: no extra forward pass), or "auto" (hidden
    when the scorer and engine allow it and there is no lookahead). From hidden states a path's scores are one
    per search step, read at its last fed token that shows text (a step cut by `max_step_tokens` is scored
    where it was cut; at a blank line or a finish this equals the text scorer's number)."""

    def __post_init__(self) -> None:
        check_n(self.n)
        check(self.reduction in REDUCTIONS, f"`reduction` must be one of {', '.join(REDUCTIONS)}, got {self.reduction!r}.", parameter="reduction", value=self.reduction)
        check(self.select in SELECTIONS, f"`select` must be one of {', '.join(SELECTIONS)}, got {self.select!r}.", parameter="select", value=self.select)
        check(isinstance(self.step_separator, str) and self.step_separator != "", f"`step_separator` must be a non-empty string, got {self.step_separator!r}.", parameter="step_separator", value=self.step_separator)
        check(isinstance(self.step_tokens, int) and self.step_tokens >= 0, f"`step_tokens` must be an integer >= 0 (0: split at `step_separator`), got {self.step_tokens!r}.", parameter="step_tokens", value=self.step_tokens)
        check(isinstance(self.max_step_tokens, int) and self.max_step_tokens >= 0, f"`max_step_tokens` must be an integer >= 0 (0: no cap), got {self.max_step_tokens!r}.", parameter="max_step_tokens", value=self.max_step_tokens)
        check(isinstance(self.max_iterations, int) and self.max_iterations >= 1, f"`max_iterations` must be an integer >= 1, got {self.max_iterations!r}.", parameter="max_iterations", value=self.max_iterations)
        check(self.partial_scores in PARTIAL_SCORES, f"`partial_scores` must be one of {', '.join(PARTIAL_SCORES)}, got {self.partial_scores!r}.", parameter="partial_scores", value=self.partial_scores)
        check(isinstance(self.max_rows, int) and self.max_rows >= 0, f"`max_rows` must be an integer >= 0 (0: the engine's batch size), got {self.max_rows!r}.", parameter="max_rows", value=self.max_rows)


@dataclass
class StepRow:
    """One path of a problem after a step, as the strategy's `update` rule sees it."""

    row: int
    """Position in the live batch."""
    tag: int
    """The strategy's label, carried to children (DVTS: the subtree)."""
    completion: Completion
    """Everything the path generated so far."""
    scores: list[float]
    """Per-step scores of the scored text (the path, plus its lookahead when there is one)."""
    score: float
    """`scores` reduced by the params' reduction: what the path is ranked by."""

    @property
    def text(self) -> str:
        return self.completion.text

    @property
    def finished(self) -> bool:
        return self.completion.finished


def check_tree_params(params) -> None:
    """The knobs beam search and DVTS share: `beam_width` >= 1, `lookahead` >= 0, and a budget `n` that is a
    multiple of `beam_width` (n / beam_width beams or subtrees)."""
    check(isinstance(params.beam_width, int) and params.beam_width >= 1, f"`beam_width` must be an integer >= 1, got {params.beam_width!r}.", parameter="beam_width", value=params.beam_width)
    check(isinstance(params.lookahead, int) and params.lookahead >= 0, f"`lookahead` must be an integer >= 0, got {params.lookahead!r}.", parameter="lookahead", value=params.lookahead)
    m = params.beam_width
    check(params.n % m == 0, f"`n` must be a multiple of `beam_width` ({m}), got {params.n}; use n = {m}, {2 * m}, {4 * m}, ... or another beam_width.", parameter="n", value=params.n)


@dataclass
class SearchState:
    """One problem's search: its pool of completed candidates and its iteration count."""

    problem: Problem
    n: int
    rng: object = None
    iteration: int = 0
    pool: list[Candidate] = field(default_factory=list)

    def complete(self, row: StepRow) -> None:
        """Add a finished path to the pool (finished paths have no lookahead: scored on their own text)."""
        c = to_candidate(self.problem, row.completion, len(self.pool))
        c.scores, c.score = list(row.scores), row.score
        self.pool.append(c)


@dataclass
class _Node:
    problem: int  # index into the solve call's problem list
    tag: int
    scores: list[float] = field(default_factory=list)  # per-step scores so far (kept for hidden-state scoring)


@dataclass
class _Ledger:
    """Per-problem compute, charged call by call."""

    usages: list[Usage]

    def charge_prefill(self, delta: EngineUsage, weights: dict[int, float]) -> None:
        """Prompt tokens computed (and read from a prefix cache) in `delta`, split by `weights`."""
        total = sum(weights.values()) or 1.0
        for p, w in weights.items():
            self.usages[p].num_prefill_tokens += round(delta.num_prefill_tokens * w / total)
            self.usages[p].num_cached_prompt_tokens += round(delta.num_cached_prompt_tokens * w / total)

    def charge_scored(self, tokens: int, weights: dict[int, float]) -> None:
        total = sum(weights.values()) or 1.0
        for p, w in weights.items():
            self.usages[p].num_scored_tokens += round(tokens * w / total)


def _prompt_chars(p: Problem) -> int:
    return sum(len(m["content"]) for m in p.chat())


def expand(keep: Sequence[int], n: int) -> list[int]:
    """`keep` repeated to n entries, each as evenly as possible, the first ones getting the remainder:
    search-and-learn's `(active_beams * repeats)[:n]`, with duplicates made adjacent."""
    k = len(keep)
    out = []
    for j, i in enumerate(keep):
        out += [i] * (n // k + (1 if j < n % k else 0))
    return out


class StepSearch(Strategy):
    """Base of the step-level searches: `solve` runs the batched loop; subclasses give `update`."""

    needs_scorer: ClassVar[bool] = True
    params_class: ClassVar[type[StepSearchParams]] = StepSearchParams

    def __init__(
        self,
        engine: Engine,
        scorer: Scorer | None = None,
        *,
        params: StepSearchParams | None = None,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        seed: int = 0,
    ) -> None:
        super().__init__(engine, scorer, params=params, sampling=sampling, seed=seed)
        check(
            not (self.lookahead > 0 and self.params.partial_scores == "hidden"),
            "`partial_scores='hidden'` cannot score lookahead text (it is generated in a separate batch); use 'text' or 'auto' with `lookahead`.",
            parameter="partial_scores",
            value="hidden",
        )
        check(
            not (self.lookahead > 0 and isinstance(scorer, LogprobScorer)),
            f"{scorer!r} scores the logprobs of the generated path, and lookahead text is generated greedily in a separate batch; drop `lookahead` with a confidence scorer.",
            parameter="lookahead",
            value=self.lookahead,
        )
        self._live = None  # set per live batch by `live_scorer`

    # -- what subclasses define ------------------------------------------------------------------------
    def initial_tags(self, n: int) -> list[int]:
        """Tags of the n paths every problem starts with (all sampled from the prompt)."""
        return list(range(n))

    def new_state(self, problem: Problem, n: int) -> SearchState:
        return SearchState(problem=problem, n=n)

    def update(self, state: SearchState, rows: list[StepRow], final: bool) -> list[int]:
        """After a scored step: move finished paths into `state.pool` and return the positions (into `rows`) of
        the paths that continue, repeated for each child; [] ends the problem's search. `final` is set on the
        last iteration, when every row has finished."""
        raise NotImplementedError

    @property
    def lookahead(self) -> int:
        return getattr(self.params, "lookahead", 0)

    # -- the loop ----------------------------------------------------------------------------------------
    def solve_batch(self, problems: Problem | Sequence[Problem]) -> list[SolveResult]:
        probs = as_problem_list(problems)
        n = self.params.n
        t0 = time.perf_counter()
        states = [self.new_state(p, n) for p in probs]
        ledger = _Ledger([Usage() for _ in probs])
        max_rows = self.params.max_rows or (self.engine.max_batch_size if isinstance(self.engine, BatchSizedEngine) else DEFAULT_MAX_ROWS)
        queue = deque(range(len(probs)))
        batch, nodes = None, []  # nodes[b]: which problem row b serves, and its tag
        bar = progress_bar(len(probs), self.use_tqdm, self.name)
        while queue or nodes:
            if not nodes:
                batch = self.engine.start()
                self._live = None if self.lookahead > 0 else live_scorer(self.scorer, self.engine, batch, self.params.partial_scores)
            admit, rows = [], len(nodes)
            while queue and batch.supports_add and (rows + n <= max_rows or (rows == 0 and not admit)):
                admit.append(queue.popleft())
                rows += n
            if admit:
                self._admit(batch, nodes, [probs[i] for i in admit], admit, n, ledger)
            nodes = self._iterate(batch, nodes, states, ledger, bar)
        if bar is not None:
            bar.close()
        wall = time.perf_counter() - t0
        results = []
        for st, u in zip(states, ledger.usages, strict=True):
            u.wall_time = wall / len(probs)
            sel = SELECTIONS[self.params.select](st.pool)
            results.append(
                SolveResult(
                    problem_id=st.problem.id,
                    strategy=self.name,
                    candidates=st.pool,
                    selected=sel,
                    answer=None if sel is None else st.pool[sel].answer,
                    usage=u,
                )
            )
        return results

    def _admit(self, batch, nodes: list[_Node], problems: list[Problem], indices: list[int], n: int, ledger: _Ledger) -> None:
        requests = [Request(messages=p.chat()) for p in problems]
        params = [replace(self.sampling, n=n, seed=problem_seed(self.seed, p.id)) for p in problems]
        before = self.engine.usage.copy()
        batch.add(requests, params)
        ledger.charge_prefill(self.engine.usage - before, {i: _prompt_chars(p) for i, p in zip(indices, problems, strict=True)})
        for i in indices:
            nodes.extend(_Node(problem=i, tag=t) for t in self.initial_tags(n))

    def _step(self, batch):
        """Advance every unfinished row by one step (a row that reaches the token cap mid-step pauses there,
        and that partial step counts as its step)."""
        if self.params.step_tokens:
            return batch.advance(self.params.step_tokens)
        return batch.advance(self.params.max_step_tokens or None, stop=[self.params.step_separator])

    def _advance(self, batch, rows_problem: list[int], states: list[SearchState], ledger: _Ledger):
        before = self.engine.usage.copy()
        outs = self._step(batch)
        # Remote engines re-send each row's prompt on every advance; charge it by prompt size.
        weights: dict[int, float] = {}
        for p in rows_problem:
            weights[p] = weights.get(p, 0.0) + _prompt_chars(states[p].problem)
        ledger.charge_prefill(self.engine.usage - before, weights)
        for p in weights:
            ledger.usages[p].num_engine_calls += 1
        for p, o in zip(rows_problem, outs, strict=True):
            ledger.usages[p].num_generated_tokens += o.num_tokens
        return outs

    def _iterate(self, batch, nodes: list[_Node], states: list[SearchState], ledger: _Ledger, bar) -> list[_Node]:
        """One step for every problem in the batch; returns the nodes after the reorder."""
        self._advance(batch, [nd.problem for nd in nodes], states, ledger)
        groups: dict[int, list[int]] = {}  # problem -> its rows, in batch order
        for b, nd in enumerate(nodes):
            groups.setdefault(nd.problem, []).append(b)
        completions: dict[int, Completion] = {}
        ready: list[int] = []
        for p, bs in groups.items():
            final = self._is_final(states[p])
            if final and not all(batch.completion(b).finished for b in bs):
                continue  # last iteration: keep generating, unscored, until every path ends
            ready.append(p)
            for b in bs:
                completions[b] = batch.completion(b)
        extra = self._lookahead([b for p in ready if not self._is_final(states[p]) for b in groups[p] if not completions[b].finished], nodes, completions, states, ledger)
        scored = self._score(ready, groups, nodes, completions, extra, states, ledger)
        order, new_nodes = [], []
        for p, bs in groups.items():
            if p not in ready:
                keep = bs
            else:
                st = states[p]
                step_rows = [StepRow(row=b, tag=nodes[b].tag, completion=completions[b], scores=scored[b], score=reduce_scores(scored[b], self.params.reduction)) for b in bs]
                final = self._is_final(st)
                picks = self.update(st, step_rows, final)
                st.iteration += 1
                keep = [bs[i] for i in picks]
                if not keep and bar is not None:
                    bar.update(1)
            order += keep
            new_nodes += [replace(nodes[b], scores=list(scored.get(b, nodes[b].scores))) for b in keep]
        if order != list(range(len(nodes))):
            batch.reorder(order)
        return new_nodes

    def _is_final(self, st: SearchState) -> bool:
        return st.iteration >= self.params.max_iterations - 1

    def _lookahead(self, rows: list[int], nodes: list[_Node], completions: dict[int, Completion], states: list[SearchState], ledger: _Ledger) -> dict[int, str]:
        """k greedy steps after each unfinished row's sampled step, in one extra live batch started from the
        rows' text (and token ids, so the continuation is exact). The rows themselves are not advanced: the
        lookahead only decides the ranking, as in search-and-learn's `generate_k_steps` (temperature 0 after
        the first step). Costs a prefill of prompt + path per row; see BENCHMARKS.md."""
        k = self.lookahead
        if k <= 0 or not rows:
            return {}
        requests, params, owners = [], [], []
        for b in rows:
            c = completions[b]
            p = nodes[b].problem
            remaining = self.sampling.max_tokens - c.num_tokens
            if remaining < 1:
                continue
            requests.append(Request(messages=states[p].problem.chat(), partial=c.text, partial_token_ids=list(c.token_ids) or None))
            params.append(replace(self.sampling, n=1, temperature=0.0, max_tokens=remaining, seed=0))
            owners.append(b)
        if not requests:
            return {}
        before = self.engine.usage.copy()
        la = self.engine.start(requests, params)
        texts = [""] * len(owners)
        for _ in range(k):
            outs = self._step(la)
            for i, o in enumerate(outs):
                texts[i] += o.text
                ledger.usages[nodes[owners[i]].problem].num_generated_tokens += o.num_tokens
            for p in {nodes[b].problem for b in owners}:
                ledger.usages[p].num_engine_calls += 1
            if all(o.finished for o in outs):
                break
        weights: dict[int, float] = {}
        for b in owners:
            p = nodes[b].problem
            weights[p] = weights.get(p, 0.0) + _prompt_chars(states[p].problem) + len(completions[b].text)
        ledger.charge_prefill(self.engine.usage - before, weights)
        return dict(zip(owners, texts, strict=True))

    def _score(self, ready: list[int], groups: dict[int, list[int]], nodes: list[_Node], completions: dict[int, Completion], extra: dict[int, str], states: list[SearchState], ledger: _Ledger) -> dict[int, list[float]]:
        """Per-step scores of every row of the ready problems (path text plus lookahead): one scorer call, or
        one head product on the live batch's hidden states (the path's earlier scores plus this step's)."""
        if not ready:
            return {}
        if self._live is not None:
            rows = [b for p in ready for b in groups[p]]
            before = self.scorer.usage.copy()
            scores = dict(zip(rows, self._live(rows), strict=True))
            delta = self.scorer.usage - before
            for p in ready:
                ledger.usages[p].num_scorer_calls += delta.num_calls
            return {b: nodes[b].scores + [scores[b]] for b in rows}
        requests = []
        weights = {}
        for p in ready:
            texts = [completions[b].text + extra.get(b, "") for b in groups[p]]
            prob = states[p].problem
            logprobs = [completions[b].logprobs for b in groups[p]]  # confidence scorers read these (no lookahead)
            requests.append(ScoreRequest(question=prob.question, candidates=texts, answer=prob.answer, last_number_fallback=prob.last_number_fallback, messages=prob.chat(), logprobs=logprobs))
            weights[p] = sum(len(prob.question) + len(t) for t in texts)
        before = self.scorer.usage.copy()
        scores = self.scorer.score(requests)
        delta = self.scorer.usage - before
        ledger.charge_scored(delta.num_tokens, weights)
        out: dict[int, list[float]] = {}
        for p, per_cand in zip(ready, scores, strict=True):
            ledger.usages[p].num_scorer_calls += delta.num_calls
            for b, s in zip(groups[p], per_cand, strict=True):
                out[b] = list(s)
        return out


def logit(p: float, eps: float = 1e-6) -> float:
    """log(p / (1 - p)), with p clipped to [eps, 1 - eps] so certain scores stay finite."""
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p / (1.0 - p))
