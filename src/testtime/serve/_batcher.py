"""The queue between the event loop and the engine.

The in-process engine is not thread-safe and a strategy blocks for seconds, so exactly one worker thread owns
the engine (and scorer) and the event loop never runs a strategy. Handlers put a `Job` on a thread-safe queue
and await an asyncio future.

On the in-process engine the worker runs a `Scheduler`: every request is a program in one shared live batch,
whatever its strategy, budget, sampling or seed, admitted at the next decode-step boundary (within
`DEFAULT_STEP_CHUNK` steps), so a request that arrives while a search runs starts at once instead of waiting
for the search, and concurrent clients never form alternating cohorts. Single-candidate requests are
interactive (`interactive_rows=1`): while one decodes, searches wait, so a greedy request beside a beam search
takes about its time alone; a reply that is one sample streams while it decodes (`Job.on_text`). A client that disconnects has its program cancelled: its rows leave the batch at
the next step.

On engines the scheduler cannot merge on (remote ones), the worker takes the first job, waits up to `window_s`
for more (or takes at once whatever queued up while it was busy), groups jobs that share strategy, budget and
sampling settings, and solves each group with ONE `strategy.solve_batch` call.

No state is shared between requests: each group gets fresh strategy objects, each request its own problem and
seed (per-problem seeds make a seeded request's candidates independent of who shares its batch; see
`strategies.problem_seed`). If a group fails, each of its jobs is retried alone, so one bad request (say, a
prompt over the context length) gets its error and the others their answers.

Continuations (`Job.partial`, vLLM's `continue_final_message`) are single samples that start from a partial
answer, which `solve` cannot express: all of a batch's continuations go to the engine in one `generate` call,
each as `Request(messages, partial=...)` with its own sampling and the seed its strategy would use for the
same problem (`problem_seed(0, problem id)`, completion 0), then become a one-candidate `SolveResult` that the
strategy's `choose` selects from. Requests asking for logprobs get the reply's token ids turned into strings
here, on the thread that owns the engine and its tokenizer, and every request gets its prompt's length in tokens
(`Job.num_prompt_tokens`: OpenAI's `usage.prompt_tokens`) from an engine that can tokenize (`PromptEncoder`).

A client that goes away cancels its job's future (`create_app` watches the connection). A cancelled job that
has not started is skipped, so it costs the engine nothing; on the scheduler a running one is cancelled at its
next yield point; on remote engines one whose group is already solving runs to the end of that call.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from .._errors import EngineError, TesttimeError, ValidationError
from ..engines import ConcurrentEngine, ModelEngine, PromptEncoder, Request, SamplingParams
from ..scheduler import Scheduler
from ..scheduler._views import add_scorer_usage
from ..scorers import ScorerUsage
from ..strategies import STRATEGIES, SolveResult, make_strategy, parse_strategy_spec, problem_seed
from ..strategies._base import split_usage, to_candidate
from ..tasks import Problem
from ._logprobs import chosen, with_token_strings

__all__ = ["Batcher", "Job", "ShuttingDown", "CLOSE_JOIN_S", "streams_tokens"]

RESERVE_ROWS = 64  # KV-cache rows the server's scheduler allocates up front (the engine's default batch size)
RESERVE_COLS = 1024  # and columns: a few-shot prompt plus a few hundred generated tokens
CLOSE_JOIN_S = 5.0  # how long close() waits for the batch in progress; the daemon worker dies with the process

log = logging.getLogger("testtime.serve")


class ShuttingDown(EngineError):
    """The server stopped before this request's turn came (answered 503)."""


SERVE_PREFILL_CHUNK = {"cpu": 256}
"""The scheduler's `prefill_chunk` by device type (default 2048): a 256-token slice is ~0.5 s of a 2-core CPU,
the longest a streamed reply pauses while a new request's prompt is prefilled."""


def serve_prefill_chunk(engine) -> int:
    """`prefill_chunk` for a server on `engine`: by the device its model runs on (2048 for remote engines, which
    the scheduler runs serially anyway)."""
    if isinstance(engine, ModelEngine):
        return SERVE_PREFILL_CHUNK.get(next(engine.model.parameters()).device.type, 2048)
    return 2048

@dataclass
class Job:
    """One request waiting for the engine."""

    problem: Problem
    strategy: str
    budget: int
    sampling: SamplingParams
    future: asyncio.Future = field(repr=False)
    loop: asyncio.AbstractEventLoop = field(repr=False)
    partial: str | None = None
    """The assistant answer to continue (one sample, `budget` 1); None runs the strategy."""
    num_prompt_tokens: int | None = None
    """The prompt's length in tokens, set by the worker when the engine can tokenize; None otherwise."""
    on_text: Callable[[str], None] | None = field(default=None, repr=False)
    """Called (on the worker thread) with the reply's text so far while its one sample decodes, for a request
    that streams tokens (`streams_tokens`); only on the scheduler, other engines answer whole."""

    def group_key(self) -> tuple:
        """Jobs with equal keys can share one `solve` call: same strategy, budget and every sampling field."""
        fields = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(vars(self.sampling).items()))
        return (self.strategy, self.budget, fields)


class SerializedScorer:
    """The scorer as one of several concurrently solving groups sees it: its `score` calls take turns (an
    in-process reward model is not thread-safe) and its `usage` counts only its own calls. Other attributes
    are the real scorer's, so capability checks see what it can do."""

    def __init__(self, inner, lock: threading.Lock) -> None:
        self.inner = inner
        self.usage = ScorerUsage()
        self._lock = lock

    def __repr__(self) -> str:
        return repr(self.inner)

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("inner", "usage", "_lock"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def score(self, requests):
        with self._lock:
            before = self.inner.usage.copy()
            out = self.inner.score(requests)
            self.usage = add_scorer_usage(self.usage, self.inner.usage - before)
        return out


def streams_tokens(strategy: str, budget: int, partial: str | None) -> bool:
    """Whether a request's reply is one sample that can be sent as it decodes: a continuation, or a strategy
    whose reply at budget 1 is its one sample (`Strategy.streams_one_sample`) run at budget 1."""
    if partial is not None:
        return True
    cls = STRATEGIES[parse_strategy_spec(strategy)[0]]
    return cls.streams_one_sample and (budget == 1 or cls.fixed_budget == 1)


def _cancel_with(future: asyncio.Future, handle) -> None:
    """Cancel the scheduler program when the request's future is cancelled (its client went away)."""
    if future.cancelled():
        handle.cancel()
    else:
        future.add_done_callback(lambda f: handle.cancel() if f.cancelled() else None)


def _deliver(future: asyncio.Future, result=None, error: BaseException | None = None) -> None:
    if future.done():  # the client went away and the handler was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Batcher:
    """Owns the engine on one worker thread and solves queued jobs in batches."""

    def __init__(self, engine, scorer=None, *, policy=None, window_s: float = 0.005, max_batch: int = 32, max_solving: int = 8, prefill_chunk: int | None = None) -> None:
        self.engine = engine
        self.scorer = scorer
        self.policy = policy  # for jobs asking for the `optimal` strategy
        self.window_s = window_s
        self.max_batch = max_batch
        self.max_solving = max_solving
        """On a `ConcurrentEngine`: groups solved at once (the per-server limit on concurrent programs)."""
        self.prefill_chunk = serve_prefill_chunk(engine) if prefill_chunk is None else prefill_chunk or None
        """The scheduler's `prefill_chunk` (ServeConfig's; 0 there means whole prompts, None here)."""
        self._pool: ThreadPoolExecutor | None = None
        self._counts = threading.Lock()  # num_batches / num_jobs, bumped from the pool's threads
        self._scoring = threading.Lock()  # one scorer call at a time: in-process scorers are not thread-safe
        self.num_batches = 0
        """`solve` calls made (a group of jobs is one call)."""
        self.num_jobs = 0
        """Jobs finished, with an answer or an error."""
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closing = False
        self.scheduler: Scheduler | None = None
        """The worker's scheduler (None until the first request; its `batched` says which mode runs)."""

    def submit(self, job: Job) -> asyncio.Future:
        """Queue `job` (call from the event loop); its future resolves to a `SolveResult` or an error."""
        with self._lock:
            if self._closing:
                job.future.set_exception(ShuttingDown("the server is shutting down; send the request to another server"))
                return job.future
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="testtime-engine", daemon=True)
                self._thread.start()
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Stop: queued jobs fail with `ShuttingDown` at once, the batch in progress gets `CLOSE_JOIN_S` to
        finish (a strategy cannot be interrupted mid-batch; the daemon worker dies with the process)."""
        with self._lock:
            thread, self._thread, self._closing = self._thread, None, True
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._finish(job, error=ShuttingDown("the server is shutting down; send the request to another server"))
        if thread is not None:
            self._queue.put(None)
            thread.join(CLOSE_JOIN_S)
        if self._pool is not None:  # groups already solving end with their calls; none starts now
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        # The KV budget is allocated once, on the first request (64 rows x 1024 columns: ~3 GB for the embedded
        # model in fp32), so admissions under load never reallocate the cache.
        self.scheduler = Scheduler(self.engine, self.scorer, interactive_rows=1, reserve_rows=RESERVE_ROWS, reserve_cols=RESERVE_COLS, prefill_chunk=self.prefill_chunk)
        if self.scheduler.batched:
            self._run_scheduled()
            return
        if isinstance(self.engine, ConcurrentEngine):
            self._pool = ThreadPoolExecutor(max_workers=self.max_solving, thread_name_prefix="testtime-solve")
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = [first], False
            deadline = time.monotonic() + self.window_s
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._solve_batch(batch)
            if stop or self._closing:
                return

    # -- the in-process engine: every request a program on the scheduler -------------------------------------
    def _run_scheduled(self) -> None:
        sched = self.scheduler
        while True:
            jobs, stop = self._take_jobs(block=not sched.has_work())
            if jobs:
                self.num_batches += 1
            for job in jobs:
                if job.future.done():  # the client left while queued
                    continue
                handle = sched.submit(self._program(job), rows=job.budget, name=job.problem.id)
                handle.add_done_callback(lambda h, job=job: self._delivered(job, h))
                try:
                    job.loop.call_soon_threadsafe(_cancel_with, job.future, handle)
                except RuntimeError:  # the event loop is closed: the server is shutting down
                    pass
            if stop or self._closing:  # finish what runs (`close` bounds the wait), admit nothing new
                while sched.has_work():
                    sched.tick()
                return
            if sched.has_work():
                sched.tick()

    def _take_jobs(self, *, block: bool) -> tuple[list[Job], bool]:
        """Queued jobs: when idle, wait for one and then `window_s` for more; when busy, whatever is there."""
        jobs: list[Job] = []
        try:
            first = self._queue.get(timeout=0.1) if block else self._queue.get_nowait()
        except queue.Empty:
            return jobs, False
        if first is None:
            return jobs, True
        jobs.append(first)
        deadline = time.monotonic() + (self.window_s if block else 0.0)
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic())) if block else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _program(self, job: Job):
        def body(engine, scorer):
            engine.on_text = job.on_text  # a `ProgramEngine`: its single-sample `generate` streams
            if job.partial is not None:
                result = self._continue([job], engine=engine, count=False)[0]
            else:
                strategy = make_strategy(job.strategy, engine, scorer, n=job.budget, sampling=job.sampling, seed=0, policy=self.policy)
                result = strategy.solve_batch([job.problem])[0]
            result = self._with_logprobs(job, result)
            job.num_prompt_tokens = self._prompt_tokens(job)
            return result

        return body

    def _delivered(self, job: Job, handle) -> None:
        error = handle.error
        if error is not None and not isinstance(error, Exception):  # Cancelled: the client is gone
            with self._counts:
                self.num_jobs += 1
            return
        if error is not None and not isinstance(error, TesttimeError):
            log.error("strategy %s failed", job.strategy, exc_info=error)
        self._finish(job, result=None if error is not None else handle.result(), error=error)

    # -- other engines: groups of jobs, one solve_batch each -----------------------------------------------
    def _solve_batch(self, batch: list[Job]) -> None:
        groups: dict[tuple, list[list[Job]]] = {}
        continuations = [job for job in batch if job.partial is not None and not job.future.done()]
        if continuations:
            self._dispatch(continuations, self._continue)
        for job in batch:
            if job.future.done() or job.partial is not None:  # cancelled while queued, or done above
                continue
            # Split a group so problem ids are unique within one solve call (two requests with one seed).
            subgroups = groups.setdefault(job.group_key(), [])
            for sub in subgroups:
                if all(j.problem.id != job.problem.id for j in sub):
                    sub.append(job)
                    break
            else:
                subgroups.append([job])
        for subgroups in groups.values():
            for jobs in subgroups:
                self._dispatch(jobs, self._solve)

    def _dispatch(self, jobs: list[Job], solve: Callable[..., list[SolveResult]]) -> None:
        """Solve a group now (one engine, groups one after another), or on the pool when the engine takes
        concurrent callers: then a long search does not hold up the groups queued behind it. Each pooled group
        gets its own engine view and scorer view, so its usage is its own."""
        if self._pool is None:
            self._solve_group(jobs, solve)
            return
        engine = self.engine.concurrent_view()
        scorer = None if self.scorer is None else SerializedScorer(self.scorer, self._scoring)
        self._pool.submit(self._solve_group, jobs, solve, engine, scorer)

    def _solve_group(self, jobs: list[Job], solve: Callable[..., list[SolveResult]], engine=None, scorer=None) -> None:
        jobs = [job for job in jobs if not job.future.done()]  # a client that left while an earlier group ran
        if not jobs:
            return
        engine = engine or self.engine
        scorer = scorer if scorer is not None else self.scorer
        try:
            results = [self._with_logprobs(job, res) for job, res in zip(jobs, solve(jobs, engine=engine, scorer=scorer), strict=True)]
            for job in jobs:
                job.num_prompt_tokens = self._prompt_tokens(job)
        except Exception as exc:
            if len(jobs) > 1:
                for job in jobs:  # isolate the failing request
                    self._solve_group([job], solve, engine, scorer)
                return
            if not isinstance(exc, TesttimeError):  # a bug, not bad input: keep its traceback in the log
                log.exception("strategy %s failed", jobs[0].strategy)
            self._finish(jobs[0], error=exc)
            return
        for job, res in zip(jobs, results, strict=True):
            self._finish(job, result=res)

    def _prompt_tokens(self, job: Job) -> int | None:
        """The request's prompt in tokens, as the engine encodes it (chat template and partial answer included).
        Not the prefill share in `usage`: that is one less (the last prompt token is decoded, not prefilled) and
        is split across batch mates, so it would change with who else was in the batch."""
        if not isinstance(self.engine, PromptEncoder):
            return None
        return len(self.engine.encode(Request(messages=job.problem.chat(), partial=job.partial or "")))

    def _solve(self, jobs: list[Job], *, engine, scorer) -> list[SolveResult]:
        first = jobs[0]
        # `make_strategy`, as the eval builds them: a spec (`deepconf:keep=0.9`) gets its params, the budget its `n`.
        strategy = make_strategy(first.strategy, engine, scorer, n=first.budget, sampling=first.sampling, seed=0, policy=self.policy)
        self._count_batch()
        return strategy.solve_batch([j.problem for j in jobs])

    def _count_batch(self) -> None:
        with self._counts:
            self.num_batches += 1

    def _continue(self, jobs: list[Job], engine=None, scorer=None, *, count: bool = True) -> list[SolveResult]:
        """Continue each job's partial answer: one sample, in one `generate` call for all of them (`count`: as
        one of `num_batches`; a program's continuation is counted with its program)."""
        engine = engine or self.engine
        t0 = time.perf_counter()
        e0 = engine.usage.copy()
        strategies = [make_strategy(j.strategy, engine, None, n=j.budget, sampling=j.sampling, seed=0) for j in jobs]
        requests = [Request(messages=j.problem.chat(), partial=j.partial) for j in jobs]
        # The sampling and seed the strategy's own `sample` would use (Greedy sets temperature 0 in its sampling).
        params = [replace(s.sampling, n=1, seed=problem_seed(s.seed, j.problem.id)) for s, j in zip(strategies, jobs, strict=True)]
        outputs = engine.generate(requests, params)
        if count:
            self._count_batch()
        problems = [j.problem for j in jobs]
        completions = [o.completions[0] for o in outputs]
        usages = split_usage(
            problems,
            engine.usage - e0,
            None,
            time.perf_counter() - t0,
            prompt_tokens=[o.num_prompt_tokens for o in outputs],
            scored_chars=[0] * len(jobs),
            generated=[c.num_tokens for c in completions],
        )
        return [
            s.choose(SolveResult(problem_id=p.id, strategy=s.name, candidates=[to_candidate(p, c, 0)], usage=u))
            for s, p, c, u in zip(strategies, problems, completions, usages, strict=True)
        ]

    def _with_logprobs(self, job: Job, result: SolveResult) -> SolveResult:
        """`result` with the reply's logprob tokens as strings, when the job asked for logprobs."""
        reply = chosen(result)
        if job.sampling.logprobs is None or reply is None:
            return result
        if reply.logprobs is None:
            raise ValidationError(
                f"strategy {job.strategy!r} returned its answer without per-token logprobs on this engine ({self.engine!r}); "
                "leave `logprobs` unset or use another strategy.",
                parameter="logprobs",
            )
        reply.logprobs = with_token_strings(reply.logprobs, self.engine)
        return result

    def _finish(self, job: Job, result=None, error: BaseException | None = None) -> None:
        with self._counts:
            self.num_jobs += 1
        try:
            job.loop.call_soon_threadsafe(_deliver, job.future, result, error)
        except RuntimeError:  # the event loop is closed: the server is shutting down
            pass
