"""The two interfaces every strategy is written against: `Engine` and the `LiveBatch` it starts.

A live batch is a set of rows (one per sampled completion) that can be advanced a few tokens or to the next
stop string, then reordered: rows dropped, duplicated or permuted. Beam search, particle filtering and
Speculative Rejection are nothing but these two operations plus a scorer.

On the in-process engine the rows live in a KV cache, so reorder never re-prefills a kept prefix. Remote
engines (vLLM, OpenAI-compatible servers) get `TextLiveBatch`, which keeps each row as text and continues it
through `generate` with a partial assistant message; strategies run unchanged, only the prefill accounting
differs (every advance re-sends the prefix).

Optional capabilities are declared here as protocols and checked with `isinstance` where a strategy or
scorer decides whether it can use them, never probed with `getattr`: `PromptEncoder` (exact prompt tokens),
`ModelEngine` (the torch model, for scorers built on the generator), `ConcurrentEngine` (safe to call
from several threads at once: remote engines), `KVCacheEngine` (KV-cache size and
free memory, for memory-sized batches), `BatchSizedEngine` (rows decoded together), `HiddenStateBatch`
(a live batch that keeps hidden states for a reward head) and `SteppableBatch` (a live batch whose rows can be
in different advances, decoded a few steps at a time: what the scheduler merges programs in).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from ._confidence import ConfidenceStop
from ._types import Completion, EngineUsage, Request, RequestOutput, SamplingParams

__all__ = ["BatchSizedEngine", "ConcurrentEngine", "Engine", "EngineView", "HiddenStateBatch", "KVCacheEngine", "LiveBatch", "ModelEngine", "PromptEncoder", "StepOutput", "StepReason", "SteppableBatch"]

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
    supports_add: bool
    """Whether `add` can admit rows now. A live batch over the transformers forward (`HFSession`) cannot once
    its first rows are prefilled; callers that stream problems in start a new batch instead."""

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
        use_tqdm: bool | Callable[..., Any] = False,
    ) -> list[RequestOutput]:
        """Complete every request, batched; outputs in input order. `use_tqdm` as in vLLM: True shows a progress
        bar of completed sequences; a callable is the bar's factory, called with tqdm's keyword arguments
        (`functools.partial(tqdm, leave=False)` for a bar that goes away when done)."""
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


@runtime_checkable
class ModelEngine(PromptEncoder, Protocol):
    """An engine that runs a torch model in this process and lends it out (`TransformersEngine`): scorers built
    on the generator's own model (the PRM head, self-evaluation) read its hidden states and next-token
    distribution. Remote engines keep only the model's name and are not `ModelEngine`s."""

    model: Any
    """The `torch.nn.Module` (a transformers causal LM)."""
    tokenizer: Any

    def hidden_states(self, sequences: Sequence[Sequence[int]], *, batch_size: int = 16) -> list[Any]: ...

    def next_token_logprobs(self, sequences: Sequence[Sequence[int]], *, batch_size: int = 16) -> Any: ...


@runtime_checkable
class KVCacheEngine(PromptEncoder, Protocol):
    """An engine whose live rows sit in a KV cache in device memory (the in-process engine): what memory-triggered
    strategies size their batches by (Speculative Rejection's `kv_budget`)."""

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes one token of one row takes in the KV cache (keys and values of every layer)."""
        ...

    def free_memory(self) -> int:
        """Free bytes on the device the cache lives on."""
        ...


@runtime_checkable
class ConcurrentEngine(Protocol):
    """An engine several threads may use at once (`OpenAIEngine`: HTTP requests to servers that batch them):
    a server runs independent requests concurrently on it instead of one after another. Each thread takes its
    own `concurrent_view()`, which shares the connections and the in-flight limit but counts its own `usage`,
    so a strategy's usage arithmetic (snapshot, call, diff) stays exact with other threads calling."""

    def concurrent_view(self) -> Engine: ...


@runtime_checkable
class BatchSizedEngine(Protocol):
    """An engine with a preferred number of rows decoded together; searches fill their live batch up to it."""

    max_batch_size: int


@runtime_checkable
class HiddenStateBatch(Protocol):
    """A live batch that can keep the hidden states its decode loop computes, so a reward head on the generator
    (`scorers.HiddenStateScorer`) scores rows without another forward pass (`TransformersLiveBatch`)."""

    def track_hidden_states(self, layers: Sequence[int]) -> None:
        """Keep these layers' states (transformers' numbering) for every row from the next decode step on."""
        ...

    def last_hidden_states(self, layers: Sequence[int] | None = None) -> Any:
        """(B, C x len(layers)) states of each row at its last fed token that shows text."""
        ...


@runtime_checkable
class SteppableBatch(Protocol):
    """A live batch whose rows can be in different advances at once, decoded a few steps at a time (the in-process
    engine's): the scheduler puts every program's rows in one such batch. `advance` is `begin_advance` on every
    row, `step` until nothing moves, `end_advance`."""

    @property
    def is_continuous(self) -> bool:
        """Whether rows can be added at any step (the native forward's cache; not the transformers fallback's)."""
        ...

    def reserve_capacity(self, rows: int, cols: int = 0) -> None:
        """Keep room for this many rows and columns (admissions then never reallocate the cache)."""
        ...

    def reset(self) -> None:
        """An empty batch starts its columns from zero, keeping its buffers."""
        ...

    def num_cached_tokens(self, encoded: Sequence[Sequence[int]]) -> list[int]:
        """Per prompt, the tokens the engine's prefix cache would serve if it were added now (0 without one); each
        added row's `num_cached_tokens` says what its prompt took from the cache."""
        ...

    def start_prefill(self, encoded: Sequence[Sequence[int]]) -> Any:
        """Begin prefilling prompts (token ids) for rows to add later, a slice at a time (chunked prefill): the
        result has `step(max_tokens)`, `done` and `num_tokens_left`; when done, `add(..., encoded=encoded,
        prefilled=it)` adds the rows without computing anything again."""
        ...

    def begin_advance(self, rows: Sequence[int], max_tokens: int | None = None, *, stop: Sequence[str] = (), confidence_stop: ConfidenceStop | None = None, group: int = 0) -> None: ...

    def step(self, max_steps: int | None = None) -> int: ...

    def end_advance(self, rows: Sequence[int]) -> list[StepOutput]: ...


@runtime_checkable
class EngineView(Protocol):
    """An engine that stands for another one (a scheduler program's view of the shared engine): scorers built on
    the real engine (`HiddenStateScorer.engine`) recognise it through `inner`."""

    inner: Any
