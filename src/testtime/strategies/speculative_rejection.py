"""Speculative Rejection (Sun et al., NeurIPS 2024, "Fast Best-of-N Decoding via Speculative Rejection").

Best-of-N started from a batch far larger than usual: generate every candidate to a decision point, score
the partial answers, reject the lowest-scoring fraction `alpha` of the live candidates, continue the
survivors, repeat (paper, Algorithm 1). Compute goes to candidates whose partial reward says they are worth
finishing, so the reward of the final choice approaches best-of-N at a large N for a fraction of its tokens.

Where this differs from the reference code, on purpose:
- Rejection is `LiveBatch.reorder(kept_rows)`: on the in-process engine the survivors' KV cache stays where
  it is, nothing is re-encoded or re-prefilled (the reference re-tokenizes and re-prefills every survivor
  after each rejection). Remote engines continue survivors from their text.
- Finished candidates go to an archive with their final score. They take no live slot and are not counted
  when the live candidates are ranked; they compete only for the final choice (the reference keeps them in
  the batch, where they crowd out live candidates).
- Many prompts share one live batch; rejection ranks each prompt's candidates among themselves.

Decision points come from a token schedule (`decision_tokens`: after 32, 64, 128, ... generated tokens), or,
on the in-process engine, from memory as in the paper's Algorithm 1: a KV budget of B tokens holds R rows of
P prompt tokens until each row has B / R - P new tokens; rejecting half the rows doubles the room.

The trade-off: a text scorer re-reads prompt + partial answer for every live candidate at every decision
point. When prompts are long and answers short (the few-shot arith prompts: ~500 prompt tokens, ~50 answer
tokens), that scoring can cost more than rejection saves (BENCHMARKS.md has the numbers). A scorer that is a
head on the generator's own hidden states (the built-in PRM head, any layer) avoids it: the live batch keeps
the layers the head reads and partial answers are scored from the states the decode loop already computed
(`partial_scores`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .._errors import ValidationError, check, problem_context
from ..engines import Engine, KVCacheEngine, PromptEncoder, Request, SamplingParams
from ..grading import extract_answer
from ..scorers import REDUCTIONS, STEP_SEPARATOR, Scorer, ScoreRequest, reduce_scores
from ..tasks import Problem
from ._base import DEFAULT_SAMPLING, Strategy, as_problem_list, problem_seed, split_usage
from ._live_scores import PARTIAL_SCORES, live_scorer
from ._select import best_of_n, weighted_vote
from ._types import Candidate, SolveResult

__all__ = [
    "AUTO",
    "keep_count",
    "next_decision_point",
    "DEFAULT_DECISION_TOKENS",
    "Round",
    "SELECTIONS",
    "SpeculativeRejection",
    "SpeculativeRejectionParams",
    "kv_token_budget",
]

AUTO = "auto"
"""`n="auto"`: the largest initial batch the KV budget holds; `kv_budget="auto"`: measure free memory."""
DEFAULT_DECISION_TOKENS = (32, 64, 128, 256)
"""Generated tokens per candidate at which the token schedule decides: early, while rejection saves the most."""
AUTO_MIN_TOKENS = 32
"""With `n="auto"`, the initial batch leaves every row room for at least this many new tokens."""
AUTO_MAX_N = 1024
DEFAULT_MAX_ROWS = 512
"""Rows started together: problems are solved in groups of max(1, max_rows // n)."""
DEFAULT_MEMORY_FRACTION = 0.5
"""Share of free device memory `kv_budget="auto"` gives the KV cache (the rest: weights, activations, scorer)."""
DEFAULT_MAX_STEP_TOKENS = 64
SELECTIONS = ("auto", "best", "weighted")


@dataclass
class SpeculativeRejectionParams:
    """Knobs of Speculative Rejection."""

    n: int | str = 64
    """Initial candidates per problem (the paper's large batch), >= 1; "auto" picks the largest n whose first
    batch fits the KV budget with `AUTO_MIN_TOKENS` of room per row (needs `kv_budget`)."""
    alpha: float = 0.5
    """Fraction of the live candidates rejected at each decision point, in [0, 1); 0 is plain best-of-n."""
    decision_tokens: list[int] = field(default_factory=lambda: list(DEFAULT_DECISION_TOKENS))
    """Generated tokens per candidate at which to decide, increasing; after the last one survivors run to the
    end. Ignored when `kv_budget` is set."""
    kv_budget: int | str | None = None
    """None: decide by `decision_tokens`. An integer: KV-cache tokens (all rows of a batch together) and
    memory-triggered decisions, as in the paper; "auto": `DEFAULT_MEMORY_FRACTION` of free device memory.
    Needs the in-process engine."""
    reduction: str = "last"
    """How per-step scores become one: "last", "min", "prod" or "mean"."""
    selection: str = "auto"
    """Final choice among finished candidates: "best" (highest score, the paper), "weighted" (score-weighted
    vote over answers), or "auto": weighted when most finished candidates state a final answer and no score
    is negative (a log-probability reward is not a vote weight), else best."""
    max_rows: int = DEFAULT_MAX_ROWS
    """Rows started together, >= 1; problems run in groups of max(1, max_rows // n)."""
    step_aligned: bool = False
    """Let every live candidate finish its current step (up to `STEP_SEPARATOR`, at most `max_step_tokens`
    more tokens) before a decision, so a step-level PRM scores complete steps, the positions it was trained
    on, instead of a step cut mid-sentence."""
    max_step_tokens: int = DEFAULT_MAX_STEP_TOKENS
    """With `step_aligned`, how long a decision waits for a step to end, >= 1."""
    partial_scores: str = "auto"
    """How live candidates are scored at a decision point: "text" (the scorer reads the partial text), "hidden"
    (a scorer with `score_hidden` reads the generator's hidden state from the live batch: no extra forward
    pass), or "auto": hidden when the scorer and engine support it, else text."""

    def __post_init__(self) -> None:
        n_ok = self.n == AUTO or (isinstance(self.n, int) and not isinstance(self.n, bool) and self.n >= 1)
        check(n_ok, f"`n` must be an integer >= 1 or 'auto', got {self.n!r}.", parameter="n", value=self.n)
        check(
            isinstance(self.alpha, (int, float)) and 0 <= self.alpha < 1,
            f"`alpha` must be in [0, 1), got {self.alpha!r}; it is the fraction of live candidates rejected at each decision point.",
            parameter="alpha",
            value=self.alpha,
        )
        self.decision_tokens = list(self.decision_tokens)
        check(
            all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in self.decision_tokens)
            and all(a < b for a, b in zip(self.decision_tokens, self.decision_tokens[1:])),
            f"`decision_tokens` must be increasing integers >= 1, got {self.decision_tokens!r}.",
            parameter="decision_tokens",
            value=self.decision_tokens,
        )
        budget_ok = self.kv_budget is None or self.kv_budget == AUTO or (isinstance(self.kv_budget, int) and not isinstance(self.kv_budget, bool) and self.kv_budget >= 1)
        check(budget_ok, f"`kv_budget` must be None, 'auto' or an integer >= 1 (tokens), got {self.kv_budget!r}.", parameter="kv_budget", value=self.kv_budget)
        check(self.n != AUTO or self.kv_budget is not None, "`n='auto'` sizes the batch from memory; set `kv_budget` too (an integer, or 'auto').", parameter="n", value=self.n)
        check(self.reduction in REDUCTIONS, f"`reduction` must be one of {', '.join(REDUCTIONS)}, got {self.reduction!r}.", parameter="reduction", value=self.reduction)
        check(self.selection in SELECTIONS, f"`selection` must be one of {', '.join(SELECTIONS)}, got {self.selection!r}.", parameter="selection", value=self.selection)
        check(self.partial_scores in PARTIAL_SCORES, f"`partial_scores` must be one of {', '.join(PARTIAL_SCORES)}, got {self.partial_scores!r}.", parameter="partial_scores", value=self.partial_scores)
        check(isinstance(self.max_step_tokens, int) and self.max_step_tokens >= 1, f"`max_step_tokens` must be an integer >= 1, got {self.max_step_tokens!r}.", parameter="max_step_tokens", value=self.max_step_tokens)
        check(isinstance(self.max_rows, int) and self.max_rows >= 1, f"`max_rows` must be an integer >= 1, got {self.max_rows!r}.", parameter="max_rows", value=self.max_rows)


@dataclass
class Round:
    """What one generate-score-reject round did to one problem's candidates."""

    num_tokens: int = 0
    """Generated tokens per live candidate when the round ended (its decision point)."""
    num_live: int = 0
    """Candidates still generating when the round ended (before rejection)."""
    num_finished: int = 0
    """Candidates that finished in this round and went to the archive."""
    num_rejected: int = 0
    """Live candidates rejected at the decision point."""


def kv_token_budget(engine, *, memory_fraction: float = DEFAULT_MEMORY_FRACTION) -> int:
    """KV-cache tokens that `memory_fraction` of the free memory of the engine's device holds.

    Needs an engine whose rows sit in a KV cache it can measure (`KVCacheEngine`: the in-process engine, which
    knows its model's layers, KV heads, head size and dtype, and its device's free memory).
    """
    if not isinstance(engine, KVCacheEngine):
        raise ValidationError(
            f"`kv_budget='auto'` measures the in-process engine's KV cache, and {engine!r} has none; pass an integer `kv_budget` or use `decision_tokens`.",
            parameter="kv_budget",
            value=AUTO,
        )
    return int(engine.free_memory() * memory_fraction) // engine.kv_bytes_per_token


def next_decision_point(params: SpeculativeRejectionParams, num_tokens: int, num_rows: int, prompt: int, kv: int | None) -> int | None:
    """Tokens per live row at the next decision point; None runs the survivors to the end."""
    if kv is None:
        return next((t for t in params.decision_tokens if t > num_tokens), None)
    # Memory-triggered (the paper's Algorithm 1): the batch is full when rows x (prompt + new tokens) = budget.
    # When rejection can no longer free room (one survivor per prompt), survivors run to the end.
    room = kv // max(num_rows, 1) - prompt
    return room if room > num_tokens else None


def keep_count(alpha: float, num_live: int) -> int:
    """Live candidates kept at a decision: the top (1 - alpha), rounded to nearest, at least one (Algorithm 1)."""
    return max(1, math.floor((1 - alpha) * num_live + 0.5)) if num_live else 0


class SpeculativeRejection(Strategy):
    """Best-of-N with early rejection of low-reward partial candidates; see the module docstring.

    `params.n` is the initial n (the budget). After each call, `rounds[problem_id]` lists what every round did
    (`Round`), in order.
    """

    name = "spr"
    params_class = SpeculativeRejectionParams
    needs_scorer = True

    def __init__(
        self,
        engine: Engine,
        scorer: Scorer | None = None,
        *,
        params: SpeculativeRejectionParams | None = None,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        seed: int = 0,
    ) -> None:
        super().__init__(engine, scorer, params=params, sampling=sampling, seed=seed)
        self.rounds: dict[str, list[Round]] = {}

    # -- planning ---------------------------------------------------------------------------------------
    def _prompt_tokens(self, problems: Sequence[Problem]) -> list[int]:
        if not isinstance(self.engine, PromptEncoder):
            raise ValidationError(
                f"memory-triggered decision points count the prompt's KV cache, which needs the in-process engine, not {self.engine!r}; use `decision_tokens` instead of `kv_budget`.",
                parameter="kv_budget",
                value=self.params.kv_budget,
            )
        return [len(self.engine.encode(Request(messages=p.chat()))) for p in problems]

    def _budget(self) -> int | None:
        b = self.params.kv_budget
        return kv_token_budget(self.engine) if b == AUTO else b

    def _plan(self, problems: list[Problem], n: int | str, budget: int | None) -> tuple[int, int]:
        """(n, problems per batch). With a KV budget, a batch also leaves every row `AUTO_MIN_TOKENS` of room."""
        if budget is None:
            return n, max(1, self.params.max_rows // n)
        room = max(self._prompt_tokens(problems)) + AUTO_MIN_TOKENS
        if n == AUTO:
            n = min(AUTO_MAX_N, self.params.max_rows, budget // room)
            if n < 1:
                raise ValidationError(
                    f"`kv_budget` of {budget} tokens cannot hold one row of a {room - AUTO_MIN_TOKENS}-token prompt plus {AUTO_MIN_TOKENS} new tokens; raise it.",
                    parameter="kv_budget",
                    value=budget,
                )
        return n, max(1, min(self.params.max_rows // n, budget // (n * room)))

    # -- solving ----------------------------------------------------------------------------------------
    def absorb(self, program_copy: Strategy) -> None:
        self.rounds = {**self.rounds, **program_copy.rounds}

    def solve_batch(self, problems: Problem | Sequence[Problem]) -> list[SolveResult]:
        probs = as_problem_list(problems)
        n = self.params.n
        self.rounds = {}
        if not probs:
            return []
        kv = self._budget()
        n, per_batch = self._plan(probs, n, kv)
        out: list[SolveResult] = []
        for s in range(0, len(probs), per_batch):
            out += self._solve_batch(probs[s : s + per_batch], n, kv)
        return out

    def _next_point(self, num_tokens: int, num_rows: int, prompt: int, kv: int | None) -> int | None:
        return next_decision_point(self.params, num_tokens, num_rows, prompt, kv)

    def _solve_batch(self, problems: list[Problem], n: int, kv: int | None) -> list[SolveResult]:
        t0 = time.perf_counter()
        e0, s0 = self.engine.usage.copy(), self.scorer.usage.copy()
        requests = [Request(messages=p.chat()) for p in problems]
        params = [replace(self.sampling, n=n, seed=problem_seed(self.seed, p.id)) for p in problems]
        prompt = max(self._prompt_tokens(problems)) if kv is not None else 0
        if kv is not None and kv // (n * len(problems)) - prompt < 1:
            raise ValidationError(
                f"`kv_budget` of {kv} tokens cannot hold {n * len(problems)} rows of a {prompt}-token prompt; lower n or raise kv_budget.",
                parameter="kv_budget",
                value=kv,
            )
        with problem_context([p.id for p in problems]):  # prefill errors name the problem, not "request i"
            batch = self.engine.start(requests, params)
        score_hidden = live_scorer(self.scorer, self.engine, batch, self.params.partial_scores)
        origin = [(r // n, r % n) for r in range(len(batch))]  # row -> (problem, candidate); start keeps request order
        cands = [[Candidate(index=j) for j in range(n)] for _ in problems]
        rounds: list[list[Round]] = [[] for _ in problems]
        scored_chars = [0] * len(problems)
        num_tokens = 0
        while len(batch):
            point = self._next_point(num_tokens, len(batch), prompt, kv)
            steps = batch.advance(None if point is None else point - num_tokens)
            if point is not None and self.params.step_aligned:
                # Rows mid-step run on to the step's end; finished rows report their finish reason again.
                steps = batch.advance(self.params.max_step_tokens, stop=[STEP_SEPARATOR])
            num_tokens = point if point is not None else num_tokens
            # One scorer call per round: finished candidates get their final score, live ones a partial one.
            texts = [batch.completion(r) for r in range(len(batch))]
            rows_of = [[r for r in range(len(batch)) if origin[r][0] == i] for i in range(len(problems))]
            scores = self._score_round(score_hidden, problems, rows_of, texts, steps, scored_chars)
            keep: list[int] = []
            for i, (p, rows) in enumerate(zip(problems, rows_of)):
                if not rows:
                    continue
                live = []
                for r in rows:
                    c, comp = cands[i][origin[r][1]], texts[r]
                    c.text, c.num_tokens, c.cumulative_logprob, c.logprobs = comp.text, comp.num_tokens, comp.cumulative_logprob, comp.logprobs
                    c.scores, c.score = list(scores[r]), reduce_scores(scores[r], self.params.reduction)
                    if steps[r].finished:
                        c.finish_reason = comp.finish_reason
                        c.answer = extract_answer(comp.text, last_number=p.last_number_fallback)
                    else:
                        live.append(r)
                num_keep = keep_count(self.params.alpha, len(live))
                ranked = sorted(live, key=lambda r: (-cands[i][origin[r][1]].score, origin[r][1]))
                kept = sorted(ranked[:num_keep])
                keep += kept
                rounds[i].append(Round(num_tokens=num_tokens, num_live=len(live), num_finished=len(rows) - len(live), num_rejected=len(live) - len(kept)))
            origin = [origin[r] for r in keep]
            batch.reorder(keep)  # drops finished and rejected rows; survivors keep their cache
        results = [SolveResult(problem_id=p.id, strategy=self.name, candidates=cs) for p, cs in zip(problems, cands)]
        for r in results:
            self._select(r)
        usages = split_usage(
            problems,
            self.engine.usage - e0,
            self.scorer.usage - s0,
            time.perf_counter() - t0,
            prompt_tokens=[sum(len(m["content"]) for m in p.chat()) for p in problems],
            scored_chars=scored_chars,
            generated=[sum(c.num_tokens for c in cs) for cs in cands],
        )
        for p, r, u, rs in zip(problems, results, usages, rounds):
            r.usage = u
            self.rounds[p.id] = rs
        return results

    def _score_round(self, score_hidden, problems, rows_of, texts, steps, scored_chars) -> dict[int, list[float]]:
        """Scores of every row: final ones for finished rows, partial ones for live rows; one scorer call.

        With a scorer that reads the generator's hidden states (`score_hidden`), live rows are scored from
        the hidden state the decode loop already computed, at the row's last fed token (one token before the
        newest), so partial scoring pushes no tokens through any model. Finished rows always get the scorer's
        full-text score, so final rewards are on the same scale as best-of-N's.
        """
        live = [r for r in range(len(texts)) if not steps[r].finished]
        out: dict[int, list[float]] = {}
        if score_hidden is not None and live:
            out.update({r: [float(s)] for r, s in zip(live, score_hidden(live))})
        text_rows = [[r for r in rows if r not in out] for rows in rows_of]
        reqs, which = [], []
        for i, (p, rows) in enumerate(zip(problems, text_rows)):
            if rows:
                reqs.append(ScoreRequest(question=p.question, candidates=[texts[r].text for r in rows], answer=p.answer, last_number_fallback=p.last_number_fallback, messages=p.chat(), logprobs=[texts[r].logprobs for r in rows]))
                which.append(rows)
                scored_chars[i] += sum(len(p.question) + len(texts[r].text) for r in rows)
        if reqs:
            for rows, scores in zip(which, self.scorer.score(reqs)):
                out.update({r: list(s) for r, s in zip(rows, scores)})
        return out

    def _select(self, result: SolveResult) -> None:
        """The final choice, among finished candidates only (rejected ones were never completed)."""
        finished = [c for c in result.candidates if c.finish_reason is not None]
        how = self.params.selection
        if how == "auto":
            how = "weighted" if 2 * sum(c.answer is not None for c in finished) > len(finished) else "best"
        if how == "weighted" and any((c.score or 0.0) < 0 for c in finished):
            how = "best"  # log-probability rewards (confidence:logprob) rank, they are not vote weights
        pick = weighted_vote(finished) if how == "weighted" else best_of_n(finished)
        if pick is None:
            pick = best_of_n(finished)
        if pick is not None:
            result.selected = finished[pick].index
            result.answer = finished[pick].answer
