"""`Scheduler`: any number of programs (strategies on one problem or one request) over one engine and one scorer.

One tick:
1. admit queued programs while their expected rows fit `max_rows` (a program always runs when nothing else does);
2. resume every program whose operation is answered, in admission order, until each posts its next operation
   (`add`, `advance`, `score`) or ends; row surgery and reads happen on the spot;
3. prefill the queued `add`s, up to `prefill_tokens` per tick while rows decode; with `prefill_chunk` set and
   an interactive program decoding, at most that many prompt tokens per tick, a longer prompt split over ticks
   (chunked prefill), so a long prompt does not stall a streamed reply; then one scorer call for every queued
   `score` (answers split back, usage shared by text size); programs answered here go back to step 2;
4. decode: one `step` of the shared live batch for every row in an advance, at most `step_chunk` tokens, and
   returning early when some program's advance completes; completed advances are answered.

Rows of all programs sit in one `TransformersLiveBatch`; a program's `ProgramBatch` maps its local rows to
the shared ones. A program's rows are dropped when it ends (or is cancelled) and its slots are refilled from the
tail, so no other row moves more than once. When the batch empties, the next rows start a fresh one (its KV
columns start again from zero).

Engines whose live batch cannot take part (remote engines, the transformers fallback that cannot admit rows
once started) run programs one after another in `serial` mode, each with the real engine: same results, no
merging.

Interactive requests: with `interactive_rows` > 0, while a program with at most that many rows is advancing,
only such programs decode and the rest wait. On a CPU a decode step costs about linearly in rows, so a greedy
request decoded beside a 16-row beam search would take several times its latency alone; holding the search
for the few seconds of a short request keeps it near its solo latency (serve's setting; the eval's is 0).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._errors import ValidationError
from ..engines import BatchSizedEngine, SteppableBatch
from ..scorers import ScorerUsage
from ._program import Cancelled, Program
from ._views import AddOp, AdvanceOp, ProgramBatch, ProgramEngine, ProgramScorer, ScoreOp, add_scorer_usage

__all__ = ["DEFAULT_STEP_CHUNK", "Handle", "Scheduler", "SchedulerStats"]

DEFAULT_STEP_CHUNK = 8
"""Decode steps between looking at the queue: bounds how long a newly arrived program waits to join (8 steps
of a 64-row CPU batch are ~1 s), and costs one Python round per 8 steps."""

DEFAULT_PREFILL_TOKENS = 2048
"""Prompt tokens prefilled per tick at most (at least one program's): ~4 s of this CPU, a fraction of a second
on a GPU."""

DEFAULT_MAX_ROWS = 64


@dataclass
class SchedulerStats:
    """What the scheduler did, for utilisation reports."""

    num_programs: int = 0
    num_steps: int = 0
    """Decode steps (each feeds every active row once)."""
    num_row_slots: int = 0
    """Rows in the shared batch summed over decode steps (active or waiting)."""
    num_generated_tokens: int = 0
    """Tokens decoded for rows that were advancing: generated / row slots is the decode-row utilisation."""
    num_score_calls: int = 0
    num_score_requests: int = 0
    num_prefills: int = 0
    num_prefill_slices: int = 0
    """Ticks that computed part of a prompt too long for one tick (chunked prefill)."""
    num_admissions: int = 0
    """Ticks that admitted at least one program."""
    max_programs: int = 0
    """Most programs running at once."""

    @property
    def utilisation(self) -> float:
        return self.num_generated_tokens / self.num_row_slots if self.num_row_slots else 0.0

    @property
    def rows_per_step(self) -> float:
        return self.num_generated_tokens / self.num_steps if self.num_steps else 0.0


class Handle:
    """A submitted program: `done`, `result()` (raises its error), `cancel()`; `on_done` callbacks run on the
    scheduler's thread."""

    def __init__(self, scheduler: Scheduler, program: Program) -> None:
        self._scheduler = scheduler
        self.program = program
        self.done = False
        self._callbacks: list[Callable[[Handle], None]] = []
        self._event = threading.Event()

    def result(self) -> Any:
        if not self.done:
            raise RuntimeError("the program has not finished; run the scheduler first")
        if self.program.error is not None:
            raise self.program.error
        return self.program.result

    @property
    def error(self) -> BaseException | None:
        return self.program.error

    def cancel(self) -> None:
        """Stop the program at its next yield point (thread-safe); its rows leave the batch."""
        self._scheduler._cancel(self)

    def add_done_callback(self, fn: Callable[[Handle], None]) -> None:
        with self._scheduler._lock:
            if not self.done:
                self._callbacks.append(fn)
                return
        fn(self)

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


class Scheduler:
    """Runs programs over `engine` and `scorer`, merging their decode steps and scorer calls (module docstring)."""

    def __init__(
        self,
        engine,
        scorer=None,
        *,
        max_rows: int | None = None,
        step_chunk: int = DEFAULT_STEP_CHUNK,
        prefill_tokens: int = DEFAULT_PREFILL_TOKENS,
        prefill_chunk: int | None = None,
        interactive_rows: int = 0,
        reserve_rows: int = 0,
        reserve_cols: int = 0,
    ) -> None:
        self.engine = engine
        self.scorer = scorer
        self.max_rows = max_rows or (engine.max_batch_size if isinstance(engine, BatchSizedEngine) else DEFAULT_MAX_ROWS)
        self.reserve_rows = reserve_rows
        """KV-cache rows (and `reserve_cols` columns) to allocate at the first admission and keep: a server
        allocates its budget once, like vLLM's KV cache, instead of growing it under load."""
        self.reserve_cols = reserve_cols
        self.step_chunk = step_chunk
        self.prefill_tokens = prefill_tokens
        self.prefill_chunk = prefill_chunk
        """While an interactive program (at most `interactive_rows` rows) decodes, prompt tokens prefilled per
        tick at most; a program whose prompts are longer is prefilled over several ticks, decode steps in
        between (None: whole prompts, `prefill_tokens` per tick; what the eval uses, so its prefills are
        computed exactly as `generate`'s)."""
        self._prefilling: tuple[Handle, Any] | None = None  # (program, its PendingPrefill) of a chunked prefill
        self._prefilled_this_tick = 0  # prompt tokens (padded) prefilled in the current tick
        self.interactive_rows = interactive_rows
        self.stats = SchedulerStats()
        self.batch = None
        self._tracked: set[int] = set()
        probe = engine.start()
        self.batched = isinstance(probe, SteppableBatch) and probe.is_continuous
        if self.batched:
            self.batch = probe
            if reserve_rows or reserve_cols:
                probe.reserve_capacity(reserve_rows, reserve_cols)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._back = threading.Semaphore(0)
        self._queue: deque[Handle] = deque()
        self._running: list[Handle] = []
        self._ready: deque[tuple[Handle, Any, BaseException | None]] = deque()
        self._cancels: list[Handle] = []
        self._handles: dict[int, Handle] = {}  # id(program) -> handle
        self._closing = False

    def __repr__(self) -> str:
        return f"Scheduler({self.engine!r}, mode={'batched' if self.batched else 'serial'}, max_rows={self.max_rows})"

    # -- submitting ---------------------------------------------------------------------------------------
    def submit(self, body: Callable[[Any, Any], Any], *, rows: int = 1, name: str = "") -> Handle:
        """Queue `body(engine, scorer)` (thread-safe). In batched mode it runs on its own thread with the program's
        views of the engine and scorer; in serial mode on the scheduler's thread with the real ones."""
        holder: dict[str, Any] = {}
        program = Program(lambda: holder["run"](), self._back, rows=max(1, rows), name=name)
        if self.batched:
            eng = ProgramEngine(self, program)
            sc = ProgramScorer(self.scorer, program) if self.scorer is not None else None
            holder["run"] = lambda: body(eng, sc)
            program.views_engine = eng
        else:
            holder["run"] = lambda: body(self.engine, self.scorer)
            program.views_engine = None
        handle = Handle(self, program)
        with self._lock:
            self._queue.append(handle)
            self._handles[id(program)] = handle
            self.stats.num_programs += 1
            self._wake.notify_all()
        return handle

    def run(self, handles: Sequence[Handle] | None = None) -> None:
        """Tick until `handles` (default: everything submitted) are done."""
        while True:
            with self._lock:
                pending = [h for h in (handles if handles is not None else list(self._handles.values())) if not h.done]
            if not pending:
                return
            self._tick()

    def map(self, bodies: Sequence[Callable[[Any, Any], Any]], *, rows: int = 1) -> list[Any]:
        """Run every body and return their results in order (the first error is raised after all have ended)."""
        handles = [self.submit(b, rows=rows, name=str(i)) for i, b in enumerate(bodies)]
        self.run(handles)
        return [h.result() for h in handles]

    def serve_forever(self, should_stop: Callable[[], bool]) -> None:
        """Tick while there is work; sleep when there is none; return once `should_stop()` (checked when idle)."""
        while True:
            with self._lock:
                while not self._queue and not self._running and not self._cancels:
                    if should_stop():
                        return
                    self._wake.wait(0.1)
            self._tick()

    def _cancel(self, handle: Handle) -> None:
        with self._lock:
            if not handle.done and handle not in self._cancels:
                self._cancels.append(handle)
                self._wake.notify_all()

    # -- one tick -----------------------------------------------------------------------------------------
    def _tick(self) -> None:
        self._prefilled_this_tick = 0
        self._apply_cancels()
        self._admit()
        if not self.batched:
            self._run_serial()
            return
        while True:
            self._resume_ready()
            if self._ready:
                continue
            if self._do_adds() or self._do_scores():
                continue
            break
        self._decode()

    def _held(self, h: Handle) -> int:
        """Rows a running program holds now (its expected rows until it has added any): finished samples that
        left the batch free their share of the budget for the next program."""
        eng = h.program.views_engine
        op = h.program.op
        pending = sum(p.n for p in op.params) if isinstance(op, AddOp) else 0
        if eng is None or (not eng.views and not pending):
            return h.program.rows
        return sum(len(v.rows) for v in eng.views) + pending

    def _admit(self) -> None:
        with self._lock:
            used = sum(self._held(h) for h in self._running)
            admitted = 0
            while self._queue and (not self._running or used + self._queue[0].program.rows <= self.max_rows):
                h = self._queue.popleft()
                used += h.program.rows
                self._running.append(h)
                self._ready.append((h, None, None))
                admitted += 1
            if admitted:
                self.stats.num_admissions += 1
                self.stats.max_programs = max(self.stats.max_programs, len(self._running))

    def has_work(self) -> bool:
        with self._lock:
            return bool(self._queue or self._running or self._cancels)

    def tick(self) -> None:
        """One round: admit, run programs to their next operation, prefill, score, decode a few steps."""
        self._tick()

    def _run_serial(self) -> None:
        while self._ready:
            h, _, _ = self._ready.popleft()
            try:
                h.program.result = h.program.body()
            except BaseException as exc:
                h.program.error = exc
            h.program.done = True
            self._finish(h)

    def _resume_ready(self) -> None:
        while self._ready:
            h, reply, error = self._ready.popleft()
            h.program.resume(reply, error)
            if h.program.done:
                self._finish(h)
                continue
            op = h.program.op
            if isinstance(op, AdvanceOp) and self._advance_done(op.batch):
                self._answer_advance(h, op)

    def _finish(self, h: Handle) -> None:
        eng = h.program.views_engine
        if eng is not None:
            for view in eng.views:
                if view.rows:
                    self._end_rows(view)
                    view.close()
        with self._lock:
            if h in self._running:
                self._running.remove(h)
            self._handles.pop(id(h.program), None)
            h.done = True
            callbacks, h._callbacks = h._callbacks, []
        h._event.set()
        for fn in callbacks:
            fn(h)

    def _apply_cancels(self) -> None:
        with self._lock:
            cancels, self._cancels = self._cancels, []
        for h in cancels:
            if h.done:
                continue
            h.program.cancelled = True
            with self._lock:
                queued = h in self._queue
                if queued:
                    self._queue.remove(h)
            if queued or not h.program.started:
                h.program.error = Cancelled("cancelled before it started")
                h.program.done = True
                self._ready = deque(r for r in self._ready if r[0] is not h)
                self._finish(h)
                continue
            op = h.program.op
            if isinstance(op, AdvanceOp):
                self._end_rows(op.batch)
            if op is not None and all(r[0] is not h for r in self._ready):
                self._ready.append((h, None, Cancelled("the request was cancelled")))

    # -- operations -------------------------------------------------------------------------------------------
    def _waiting(self, kind) -> list[Handle]:
        return [h for h in self._running if isinstance(h.program.op, kind) and all(r[0] is not h for r in self._ready)]

    def _do_adds(self) -> bool:
        """Prefill waiting `add`s within this tick's prompt tokens (`prefill_chunk` while an interactive program
        decodes, else `prefill_tokens`; no limit while no rows decode). True when some program got its rows (it runs on); False when nothing was
        added (nothing waiting, the tick's tokens spent, or only a slice of a long prompt computed), so the
        decode steps come next."""
        decoding = self._waiting(AdvanceOp)
        # Slices only while an interactive program decodes: it waits on every token (a streamed reply), where
        # bulk programs want their prompts in as fast as possible (slicing throttled serve's 8-client load).
        chunk = self.prefill_chunk if self.interactive_rows and any(len(h.program.op.batch) <= self.interactive_rows for h in decoding) else None
        limit = (chunk or self.prefill_tokens) if decoding else None
        left = None if limit is None else limit - self._prefilled_this_tick
        if left is not None and left <= 0:
            return False
        if self._prefilling is not None:
            return self._go_on_prefilling(left)
        todo = self._waiting(AddOp)
        if not todo:
            return False
        first = todo[0].program.op
        first_cost = self._prefill_cost(first)
        if left is not None and first_cost > left and self._prefilled_this_tick:
            return False  # the next tick's
        if chunk and first_cost > left:
            # Too long for one tick while others decode: this program's prompts go in slices, one per tick.
            self._prefilling = (todo[0], self.batch.start_prefill(first.encoded))
            return self._go_on_prefilling(left)
        take = []
        for h in todo:  # at least one program, then whatever fits
            n = first_cost if h is todo[0] else self._prefill_cost(h.program.op)
            if take and left is not None and n > left:
                break
            take.append(h)
            left = None if left is None else left - n
            self._prefilled_this_tick += n
        # Longest prompts first, like `generate`: shorter ones then fit left of the shared write column, so the
        # cache never shifts. One `add` (one prefill pass, one row expansion) per first index.
        take.sort(key=lambda h: -max(len(ids) for ids in h.program.op.encoded))
        groups: dict[int, list[Handle]] = {}
        for h in take:
            groups.setdefault(h.program.op.first_index, []).append(h)
        for first_index, hs in groups.items():
            try:
                self._add([h.program.op for h in hs], first_index)
            except Exception:
                for h in hs:  # isolate the request that failed
                    try:
                        self._add([h.program.op], first_index)
                    except Exception as exc:
                        self._ready.append((h, None, exc))
                        continue
                    self._ready.append((h, None, None))
                continue
            self._ready.extend((h, None, None) for h in hs)
        return True

    def _prefill_cost(self, op: AddOp) -> int:
        """Prompt tokens an admission computes: its prompts less what the engine's prefix cache holds of them."""
        return op.num_tokens - sum(self.batch.num_cached_tokens(op.encoded))

    def _go_on_prefilling(self, max_tokens: int | None) -> bool:
        h, pending = self._prefilling
        if h.done or h.program.cancelled:  # cancelled mid-prefill: nothing was added, drop the work
            self._prefilling = None
            return False
        before = pending.num_computed
        pending.step(max_tokens)
        self._prefilled_this_tick += pending.num_computed - before
        self.stats.num_prefill_slices += 1
        if not pending.done:
            return False
        self._prefilling = None
        op = h.program.op
        try:
            self._add([op], op.first_index, prefilled=pending)
        except Exception as exc:
            self._ready.append((h, None, exc))
            return True
        self._ready.append((h, None, None))
        return True

    def _add(self, ops: list[AddOp], first_index: int, prefilled=None) -> None:
        batch = self.batch
        if len(batch) == 0:
            batch.reset()  # columns from zero, buffers kept
        new_rows = sum(p.n for op in ops for p in op.params)
        batch.reserve_capacity(max(len(batch) + new_rows, self.reserve_rows), self.reserve_cols)
        first = len(batch)
        requests = [r for op in ops for r in op.requests]
        params = [p for op in ops for p in op.params]
        batch.add(requests, params, first_index=first_index, encoded=[ids for op in ops for ids in op.encoded], prefilled=prefilled)
        self.stats.num_prefills += 1
        at = first
        for op in ops:
            view = op.batch
            # Each program is charged the prompt tokens computed for it (the last one is decoded; a prefix the
            # engine's cache held is not computed again, and counts as cached).
            cached = [batch.rows[at + sum(p.n for p in op.params[:i])].num_cached_tokens if p.n else 0 for i, p in enumerate(op.params)]
            view.usage.num_prefill_tokens += sum(len(ids) - 1 - c for ids, c in zip(op.encoded, cached, strict=True))
            view.usage.num_cached_prompt_tokens += sum(cached)
            for i, p in enumerate(op.params):
                view.rows.extend(range(at, at + p.n))
                view.request_of.extend([view._num_requests + i] * p.n)
                at += p.n
            view._num_requests += len(op.requests)

    def _do_scores(self) -> bool:
        todo = self._waiting(ScoreOp)
        if not todo:
            return False
        ops: list[ScoreOp] = [h.program.op for h in todo]
        try:
            answers = self._score_together(ops)
        except Exception:
            answers = None
        if answers is None:  # isolate a failing request: each program alone
            for h, op in zip(todo, ops):
                try:
                    self._ready.append((h, self._score_together([op])[0], None))
                except Exception as exc:
                    self._ready.append((h, None, exc))
            return True
        for h, ans in zip(todo, answers):
            self._ready.append((h, ans, None))
        return True

    def _score_together(self, ops: list[ScoreOp]) -> list[list]:
        requests = [r for op in ops for r in op.requests]
        before = self.scorer.usage.copy()
        scores = self.scorer.score(requests)
        delta = self.scorer.usage - before
        self.stats.num_score_calls += 1
        self.stats.num_score_requests += len(requests)
        text = [sum(len(r.question) + sum(len(c) for c in r.candidates) for r in op.requests) for op in ops]
        prompt = [sum(len(r.question) for r in op.requests) for op in ops]
        out, at = [], 0
        for op, t, q in zip(ops, text, prompt):
            k = len(op.requests)
            out.append(scores[at : at + k])
            at += k
            prefix = round(delta.num_prefix_tokens * q / (sum(prompt) or 1))
            rest = round((delta.num_tokens - delta.num_prefix_tokens) * t / (sum(text) or 1))
            op.scorer.usage = add_scorer_usage(op.scorer.usage, ScorerUsage(num_tokens=prefix + rest, num_calls=1, num_prefix_tokens=prefix))
        return out

    def begin_advance(self, view: ProgramBatch, max_tokens, *, stop, confidence_stop) -> None:
        """Start `view`'s advance on its shared rows (called on the program's thread, before it yields)."""
        if confidence_stop is not None and len(confidence_stop.thresholds) != len(view.rows):
            raise ValidationError(f"`confidence_stop` has {len(confidence_stop.thresholds)} thresholds for a batch of {len(view.rows)} rows; give one per row (None to skip a row).", parameter="confidence_stop")
        self.batch.begin_advance(view.rows, max_tokens, stop=stop, confidence_stop=confidence_stop, group=id(view))

    def _advance_done(self, view: ProgramBatch) -> bool:
        return all(self.batch.rows[g].advance is None or self.batch.rows[g].advance.done for g in view.rows)

    def _answer_advance(self, h: Handle, op: AdvanceOp) -> None:
        outs = self.batch.end_advance(op.batch.rows) if op.batch.rows else []
        op.batch.usage.num_generated_tokens += sum(o.num_tokens for o in outs)
        self._ready.append((h, outs, None))

    def _end_rows(self, view: ProgramBatch) -> None:
        if self.batch is not None and view.rows:
            self.batch.end_advance(view.rows)

    def _decode(self) -> None:
        waiting = self._waiting(AdvanceOp)
        if not waiting:
            return
        batch = self.batch
        small = self.interactive_rows and any(len(h.program.op.batch) <= self.interactive_rows for h in waiting)
        stepping = []
        for h in waiting:
            view = h.program.op.batch
            hold = bool(small) and len(view) > self.interactive_rows
            for g in view.rows:
                if batch.rows[g].advance is not None:
                    batch.rows[g].advance.held = hold
            if not hold:
                stepping.append(h)
        generated = batch.usage.num_generated_tokens
        steps = batch.step(self.step_chunk)
        self.stats.num_steps += steps
        self.stats.num_row_slots += steps * len(batch)
        self.stats.num_generated_tokens += batch.usage.num_generated_tokens - generated
        for h in stepping:
            op: AdvanceOp = h.program.op
            op.steps += steps
            op.batch.usage.num_forward_passes += steps
            op.batch.usage.num_decoded_tokens += steps * len(op.batch)
        for h in waiting:
            op = h.program.op
            if self._advance_done(op.batch):
                self._answer_advance(h, op)

    # -- row surgery (on a program's thread, while the scheduler waits) ----------------------------------------
    def track_hidden_states(self, layers: Sequence[int]) -> None:
        self._tracked |= {int(i) for i in layers}
        self.batch.track_hidden_states(layers)

    def reorder(self, view: ProgramBatch, local: list[int]) -> None:
        """Apply `view.reorder(local)` to the shared batch, touching no other program's row except to fill the
        slots it frees from the tail (each such row moves once). The view's new rows take its lowest old slots
        in order, extra rows go to the end, so the first copy of a duplicated row stays the original (forks, and
        so the seeds of the copies, come out as in a batch of its own)."""
        batch = self.batch
        old = view.rows
        sources = [old[i] for i in local]
        view.request_of = [view.request_of[i] for i in local]
        if sources == old:
            return
        slots = sorted(old)
        order = list(range(len(batch)))
        new_slots = []
        for j, src in enumerate(sources):
            if j < len(slots):
                order[slots[j]] = src
                new_slots.append(slots[j])
            else:
                order.append(src)
                new_slots.append(len(order) - 1)
        holes = set(slots[len(sources) :])
        moved: dict[int, int] = {}
        if holes:
            keep = len(order) - len(holes)
            tail = [s for s in range(keep, len(order)) if s not in holes]
            for hole, t in zip(sorted(h for h in holes if h < keep), tail):
                order[hole] = order[t]
                moved[t] = hole
            order = order[:keep]
        batch.reorder(order)
        view.rows = new_slots
        if moved:
            for eng in self._engines():
                for v in eng.views:
                    if v is not view and v.rows:
                        v.rows = [moved.get(g, g) for g in v.rows]

    def _engines(self):
        return [h.program.views_engine for h in self._running if h.program.views_engine is not None]

    def close(self) -> None:
        """Cancel everything queued or running (serve's shutdown)."""
        with self._lock:
            handles = list(self._queue) + list(self._running)
        for h in handles:
            h.cancel()
