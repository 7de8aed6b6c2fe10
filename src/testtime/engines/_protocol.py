"""The two interfaces every strategy is written against: `Engine` and the `LiveBatch` it starts.

A live batch is a set of rows (one per sampled completion) that can be advanced a few tokens or to the next
stop string, then reordered: rows dropped, duplicated or permuted. Beam search, particle filtering and
Speculative Rejection are nothing but these two operations plus a scorer.

On the in-process engine the rows live in a KV cache, so reorder never re-prefills a kept prefix. Remote
engines (vLLM, OpenAI-compatible servers) get `TextLiveBatch`, which keeps each row as text and continues it
through `generate` with a partial assistant message; strategies run unchanged, only the prefill accounting
differs (every advance re-sends the prefix).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from ._confidence import ConfidenceStop
from ._types import Completion, EngineUsage, Request, RequestOutput, SamplingParams

__all__ = ["Engine", "LiveBatch", "PromptEncoder", "StepOutput", "StepReason"]

StepReason = Literal["boundary", "limit", "confidence", "stop", "eos", "length"]
"""Why a row paused or ended in `advance`:
"boundary": it produced one of the advance's `stop` strings (a step boundary) and can continue;
"limit": it generated the advance's `max_tokens` and can continue;
"confidence": its group confidence fell below the advance's `confidence_stop` threshold (it can continue, but
DeepConf drops it);
"stop" / "eos" / "length": it finished for good (its request's stop string, end-of-sequence, its `max_tokens`).
"""


@dataclass
class StepOutput:
    """What one row produced in one `advance` call."""

    text: str = ""
    """Text added in this call (stop strings included: the row's history must match its tokens)."""
    num_tokens: int = 0
    """Tokens added in this call."""
    reason: StepReason | None = None
    """Why the row stopped in this call; for a row that was already finished, its finish reason."""

    @property
    def finished(self) -> bool:
        return self.reason in ("stop", "eos", "length")


@runtime_checkable
class LiveBatch(Protocol):
    """Rows being generated, advanced and reordered in place. Row indices are positions in the batch."""

    usage: EngineUsage

    def __len__(self) -> int: ...

    @property
    def request_indices(self) -> list[int]:
        """For each row, the index (in order of `start`/`add` calls) of the request it came from."""
        ...

    def add(self, requests: Request | Sequence[Request], params: SamplingParams | Sequence[SamplingParams], *, first_index: int = 0) -> None:
        """Append rows for new requests (`params.n` rows each) at the end of the batch. The rows are the requests'
        completions `first_index`, `first_index + 1`, ... (index and seed), so a request can be sampled in parts
        that together equal one request with the larger n."""
        ...

    def advance(self, max_tokens: int | None = None, *, stop: Sequence[str] = (), confidence_stop: ConfidenceStop | None = None) -> list[StepOutput]:
        """Generate for every unfinished row until it emits one of `stop`, has `max_tokens` new tokens (None: no
        limit besides its request's own), its group confidence drops below its `confidence_stop` threshold, or
        it finishes. Returns one `StepOutput` per row, in row order. Engines that continue rows by text check
        the confidence after each chunk of tokens (`TextLiveBatch.confidence_chunk`), so a row may run a few
        tokens past the point where it dropped; every token generated is counted."""
        ...

    def reorder(self, rows: Sequence[int]) -> None:
        """New row i becomes old row rows[i]: drops rows not listed, duplicates repeated ones (each duplicate
        samples its own continuation from here on). Finished rows may be kept."""
        ...

    def completion(self, row: int) -> Completion:
        """Everything row `row` generated since its request started (after the request's `partial`)."""
        ...


@runtime_checkable
class Engine(Protocol):
    """Generates text. `generate` for whole completions, `start` for step-by-step control."""

    usage: EngineUsage

    def generate(
        self,
        requests: Request | Sequence[Request],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        use_tqdm: bool = False,
    ) -> list[RequestOutput]:
        """Complete every request, batched; outputs in input order."""
        ...

    def start(
        self,
        requests: Request | Sequence[Request],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> LiveBatch:
        """Prefill the requests and return a live batch with `params.n` rows per request, in request order."""
        ...


@runtime_checkable
class PromptEncoder(Protocol):
    """An engine that tokenizes a request exactly as it prefills it (the in-process engine): what memory-sized
    strategies (Speculative Rejection's KV budget) count."""

    def encode(self, request: Request) -> list[int]: ...
