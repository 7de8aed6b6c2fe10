"""What a program sees: an `Engine`, `LiveBatch`es and a `Scorer` that are windows onto the scheduler's shared ones.

`ProgramEngine.start()` gives a `ProgramBatch`: the program's own rows (local indices 0..k-1) inside the one
live batch every program shares. Reads (`completion`, `last_hidden_states`) and row surgery (`reorder`) act on
the shared batch at once (only one thread runs at a time); `add`, `advance` and `score` are yield points that
the scheduler merges with the other programs' work. Each program keeps its own `usage` counters, so a
strategy's usage arithmetic (snapshot, call, diff) charges it exactly its own compute.

Optional capabilities are forwarded attribute by attribute (`__getattr__`), so `isinstance(engine,
KVCacheEngine)` and friends answer for the program's engine exactly as for the real one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import ValidationError
from ..engines import Completion, EngineUsage, Request, RequestOutput, SamplingParams, StepOutput
from ..engines._live import as_lists, check_first_index
from ..scorers import ScoreRequest, ScorerUsage

if TYPE_CHECKING:
    from ._scheduler import Scheduler
    from ._program import Program

__all__ = ["AddOp", "AdvanceOp", "ProgramBatch", "ProgramEngine", "ProgramScorer", "ScoreOp"]


GENERATE_CHUNK = 32
"""Tokens between harvests of finished rows in `ProgramEngine.generate` (the engine's `ADVANCE_CHUNK`)."""

STREAM_CHUNK = 4
"""Tokens between text updates of a streamed single-sample `generate` (`ProgramEngine.on_text`): ~0.1 s of a
one-row CPU decode, and one scheduler round trip (microseconds) each."""


@dataclass
class AddOp:
    batch: ProgramBatch
    requests: list[Request]
    params: list[SamplingParams]
    encoded: list[list[int]]
    first_index: int

    @property
    def num_tokens(self) -> int:
        return sum(len(ids) for ids in self.encoded)


@dataclass
class AdvanceOp:
    batch: ProgramBatch
    steps: int = 0  # decode steps run while this advance was in progress


@dataclass
class ScoreOp:
    scorer: ProgramScorer
    requests: list[ScoreRequest]


class ProgramBatch:
    """A program's rows in the shared live batch (the `LiveBatch` protocol, plus `HiddenStateBatch` when the
    shared batch keeps hidden states)."""

    supports_add = True  # the scheduler admits rows at any step boundary

    def __init__(self, engine: ProgramEngine) -> None:
        self.engine = engine
        self.usage = engine.usage
        self.rows: list[int] = []
        """Global row index of each local row, kept current by the scheduler."""
        self.request_of: list[int] = []
        """Local request index of each local row."""
        self._num_requests = 0
        self.closed = False
        engine.views.append(self)

    @property
    def _shared(self):
        return self.engine.scheduler.batch

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"ProgramBatch(rows={len(self.rows)})"

    @property
    def request_indices(self) -> list[int]:
        return list(self.request_of)

    def add(self, requests, params=None, *, first_index: int = 0) -> None:
        reqs, plist = as_lists(requests, params)
        check_first_index(first_index)
        if not reqs:
            return
        encoded = self._shared.encode(reqs, plist, first_request=self._num_requests)  # bad input fails here, alone
        self.engine.program.wait(AddOp(self, reqs, plist, encoded, first_index))

    def advance(self, max_tokens: int | None = None, *, stop: Sequence[str] = (), confidence_stop=None) -> list[StepOutput]:
        self.engine.scheduler.begin_advance(self, max_tokens, stop=stop, confidence_stop=confidence_stop)
        self.usage.num_calls += 1
        return self.engine.program.wait(AdvanceOp(self))

    def reorder(self, rows: Sequence[int]) -> None:
        rows = [int(r) for r in rows]
        bad = [r for r in rows if not 0 <= r < len(self.rows)]
        if bad:
            raise ValidationError(f"reorder got row {bad[0]}, but the batch has rows 0..{len(self.rows) - 1}.", parameter="rows", value=bad[0])
        self.engine.scheduler.reorder(self, rows)

    def completion(self, row: int, index: int | None = None) -> Completion:
        return self._shared.completion(self.rows[row], index)

    def is_finished(self, row: int) -> bool:
        return self._shared.is_finished(self.rows[row])

    def num_prompt_tokens(self, row: int) -> int:
        return self._shared.num_prompt_tokens(self.rows[row])

    def close(self) -> None:
        """Drop every row (the scheduler also does this when the program ends)."""
        if not self.closed:
            self.engine.scheduler.reorder(self, [])
            self.closed = True

    # `HiddenStateBatch`, on the shared batch's rows
    def track_hidden_states(self, layers: Sequence[int]) -> None:
        self.engine.scheduler.track_hidden_states(layers)

    def last_hidden_states(self, layers: Sequence[int] | None = None) -> Any:
        return self._shared.last_hidden_states(layers)[self.rows]


class ProgramEngine:
    """The engine a program is given: `start` and `generate` run in the shared batch; everything else (the
    tokenizer, `encode`, the model for scorers built on it, memory figures) is the real engine's."""

    def __init__(self, scheduler: Scheduler, program: Program) -> None:
        self.scheduler = scheduler
        self.program = program
        self.usage = EngineUsage()
        self.inner = scheduler.engine
        self.views: list[ProgramBatch] = []
        self.on_text: Callable[[str], None] | None = None
        """Set by a server that streams this program's reply: a single-sample `generate` calls it with the text
        so far every `STREAM_CHUNK` tokens (see `generate`)."""

    def __repr__(self) -> str:
        return repr(self.inner)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def start(self, requests=(), params=None) -> ProgramBatch:
        batch = ProgramBatch(self)
        reqs, plist = as_lists(requests, params)
        if reqs:
            batch.add(reqs, plist)
        return batch

    def generate(self, requests, params=None, *, use_tqdm: bool | Callable[..., Any] = False) -> list[RequestOutput]:
        """Every request to the end, decoded with the other programs' rows; outputs in input order."""
        reqs, plist = as_lists(requests, params)
        batch = ProgramBatch(self)
        outputs = [RequestOutput(completions=[Completion() for _ in range(p.n)]) for p in plist]
        try:
            batch.add(reqs, plist)
            calls = self.usage.num_calls
            # In chunks, as `TransformersEngine.generate` does: finished rows leave the batch between chunks, so
            # their slots (and the scheduler's row budget) go to other programs instead of idling until this
            # request's longest sample ends. Pausing never changes a row's tokens (its own seeded stream).
            stream = self.on_text if len(plist) == 1 and plist[0].n == 1 else None
            # A stop string may be matched only when its last character arrives: the text sent so far holds
            # back as many characters as a stop string could have started, so it is always a prefix of the
            # final (stop-trimmed) text.
            hold = max((len(s) - 1 for s in plist[0].stop), default=0) if stream else 0
            while len(batch):
                batch.advance(STREAM_CHUNK if stream else GENERATE_CHUNK)
                done = [b for b in range(len(batch)) if batch.is_finished(b)]
                for b in done:
                    c = batch.completion(b)
                    out = outputs[batch.request_of[b]]
                    out.completions[c.index] = c
                    out.num_prompt_tokens = batch.num_prompt_tokens(b)
                if done:
                    batch.reorder([b for b in range(len(batch)) if b not in set(done)])
                elif stream is not None:
                    text = batch.completion(0).text
                    stream(text[: len(text) - hold])
            self.usage.num_calls = calls + 1  # one generate call, as the engine counts it
            return outputs
        finally:
            batch.close()


@dataclass
class ProgramScorer:
    """The scorer a program is given: `score` calls of all programs go to the real scorer together; the program's
    `usage` gets its share. Other attributes (`score_hidden`, `hidden_layers`, `num_logprobs`) are the real
    scorer's, so capability checks see what it can do."""

    inner: Any
    program: Any
    usage: ScorerUsage = field(default_factory=ScorerUsage)

    def __repr__(self) -> str:
        return repr(self.inner)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("inner", "program", "usage"):
            raise AttributeError(name)
        value = getattr(self.inner, name)  # AttributeError when the real scorer lacks it
        if name == "score_hidden":
            return self._charged(value)
        return value

    def score(self, requests) -> list[list[list[float]]]:
        reqs = [requests] if isinstance(requests, ScoreRequest) else list(requests)
        return self.program.wait(ScoreOp(self, reqs))

    def _charged(self, fn: Callable) -> Callable:
        """`fn` (a head product on hidden states: cheap, not merged) with its usage charged to this program."""

        def call(*args, **kwargs):
            before = self.inner.usage.copy()
            out = fn(*args, **kwargs)
            self.usage = add_scorer_usage(self.usage, self.inner.usage - before)
            return out

        return call


def add_scorer_usage(a: ScorerUsage, b: ScorerUsage) -> ScorerUsage:
    return ScorerUsage(**{k: v + getattr(b, k) for k, v in vars(a).items()})
