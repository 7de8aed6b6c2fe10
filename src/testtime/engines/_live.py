"""The in-process live batch: rows in a KV cache, advanced by a decode loop, reordered without re-prefill.

Each row's state is a pending token (sampled, not yet fed), its rotary position, its sampling knobs and its
own `random.Random`. A decode step feeds every row's pending token, but rows that are paused or finished
write a masked column and keep their position, so they neither advance nor disturb the others. One host
sync (`tolist`) per step serves the stop checks of all rows.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .._errors import ValidationError, error_context
from ._confidence import ConfidenceStop, WindowMean, token_confidence
from ._detok import IncrementalDetokenizer, find_stop
from ._prompt import encode_request
from ._protocol import StepOutput
from ._sampling import derive_seed, sample
from ._types import Completion, EngineUsage, Request, SamplingParams, TokenLogprobs

__all__ = ["RowAdvance", "TransformersLiveBatch", "as_lists", "check_first_index", "confidence_windows", "confidence_dropped", "record_logprobs"]


def as_lists(requests, params) -> tuple[list[Request], list[SamplingParams]]:
    """Normalize one-or-many requests and params (one value, or one per request) to two equal lists."""
    reqs = [requests] if isinstance(requests, Request) else list(requests)
    if params is None:
        params = SamplingParams()
    if isinstance(params, SamplingParams):
        plist = [params] * len(reqs)
    else:
        plist = list(params)
        if len(plist) != len(reqs):
            raise ValidationError(
                f"got {len(reqs)} requests but {len(plist)} SamplingParams; pass one, or one per request.",
                parameter="params",
            )
    for i, r in enumerate(reqs):
        if not isinstance(r, Request):
            raise ValidationError(f"request {i} is a {type(r).__name__}, expected testtime.Request.", parameter="requests")
    return reqs, plist


@dataclass
class RowAdvance:
    """One row's advance in progress: its own token limit, step stops and confidence check, and what it has
    produced so far. Rows of one batch can be in different advances (the scheduler's programs), and an advance
    can span several `step` calls."""

    limit: int
    """Tokens this advance may add."""
    stop: list[str]
    """Step boundaries: the row pauses with reason "boundary" after producing one."""
    start_len: int
    """Length of the row's text when the advance began (stops are searched after it)."""
    window: WindowMean | None = None
    threshold: float | None = None
    group: int = 0
    """Whose advance this is: `step` returns early once every row of a group is done."""
    out: StepOutput = field(default_factory=StepOutput)
    held: bool = False
    """Set by a scheduler to leave the row out of the next `step` calls (it waits, its advance goes on later)."""

    @property
    def done(self) -> bool:
        return self.out.reason is not None


@dataclass
class _Row:
    request_index: int
    params: SamplingParams
    seed: int
    rng: random.Random
    detok: IncrementalDetokenizer
    num_prompt_tokens: int
    index: int = 0  # completion index within its request
    num_cached_tokens: int = 0  # of the prompt, tokens whose keys and values came from the prefix cache
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    cumulative_logprob: float = 0.0
    finish_reason: str | None = None
    stop_reason: str | None = None
    stop_index: int | None = None  # where the matched final stop string starts in `text`
    num_forks: int = 0
    logprobs: TokenLogprobs | None = None  # when params.logprobs asks for them
    advance: RowAdvance | None = None  # the advance in progress (it moves with the row when rows are reordered)

    def fork(self) -> _Row:
        """A copy that samples its own continuation: a fresh stream seeded from (seed, length, fork count)."""
        self.num_forks += 1
        seed = derive_seed(self.seed, len(self.token_ids), self.num_forks)
        return _Row(
            request_index=self.request_index,
            params=self.params,
            seed=seed,
            rng=random.Random(seed),
            detok=self.detok.copy(),
            num_prompt_tokens=self.num_prompt_tokens,
            index=self.index,
            num_cached_tokens=self.num_cached_tokens,
            token_ids=list(self.token_ids),
            text=self.text,
            cumulative_logprob=self.cumulative_logprob,
            finish_reason=self.finish_reason,
            stop_reason=self.stop_reason,
            stop_index=self.stop_index,
            logprobs=None if self.logprobs is None else self.logprobs.copy(),
        )


def check_first_index(first_index: int) -> None:
    if not isinstance(first_index, int) or isinstance(first_index, bool) or first_index < 0:
        raise ValidationError(f"`first_index` must be an integer >= 0, got {first_index!r}.", parameter="first_index", value=first_index)


def confidence_windows(rows, stop: ConfidenceStop | None) -> list[WindowMean | None]:
    """Per row, the running group-confidence window `stop` checks (None: unchecked), primed with the row's
    last tokens so a window spans advances. Shared by every live batch."""
    if stop is None:
        return [None] * len(rows)
    if len(stop.thresholds) != len(rows):
        raise ValidationError(f"`confidence_stop` has {len(stop.thresholds)} thresholds for a batch of {len(rows)} rows; give one per row (None to skip a row).", parameter="confidence_stop")
    out: list[WindowMean | None] = []
    for b, (row, t) in enumerate(zip(rows, stop.thresholds)):
        if t is None or row.finish_reason is not None:
            out.append(None)
            continue
        if not row.params.logprobs:
            raise ValidationError(f"`confidence_stop` reads top logprobs, but row {b}'s request has `logprobs={row.params.logprobs!r}`; ask for SamplingParams(logprobs=k) with k >= 1.", parameter="logprobs", value=row.params.logprobs)
        out.append(WindowMean(stop.window, [token_confidence(t) for t in row.logprobs.top_logprobs[-stop.window :]]))
    return out


def confidence_dropped(window: WindowMean, logprobs: TokenLogprobs, threshold: float) -> bool:
    """Push the newest token's confidence; True once a full window's mean is below `threshold`."""
    window.push(token_confidence(logprobs.top_logprobs[-1]))
    return window.full and window.mean < threshold


def record_logprobs(into: TokenLogprobs, token: int, logprob: float, extra: tuple[float, list[float], list[int]] | None) -> None:
    """Append one position: the sampled token, its logprob and (kl, top values, top ids) from `_logprob_extras`."""
    into.logprobs.append(logprob)
    into.tokens.append(token)
    kl, vals, ids = extra if extra is not None else (None, [], [])
    into.top_logprobs.append(vals)
    into.top_tokens.append(ids)
    if into.kl_from_uniform is not None:
        into.kl_from_uniform.append(kl)


def _logprob_extras(logits: torch.Tensor, asked: list[int | None]) -> list[tuple[float, list[float], list[int]] | None]:
    """Per row of `logits` (Ba, V): (KL(uniform || p), top-k logprobs, their ids) for rows that ask for
    logprobs (`asked[i]` = k), None for the others. One log-softmax and one top-k for the whole batch, and one
    host transfer; costs nothing when no row asks."""
    want = [i for i, k in enumerate(asked) if k is not None]
    if not want:
        return [None] * len(asked)
    k = max(asked[i] for i in want)
    rows = torch.tensor(want, device=logits.device)
    logp = torch.log_softmax(logits[rows].float(), -1)  # (Bw, V)
    # KL(U || p) = sum_j (1/V) log((1/V) / p_j) = -log V - mean_j log p_j: how far from a flat guess.
    kl = -math.log(logp.shape[-1]) - logp.mean(-1)
    if k:
        vals, ids = logp.topk(k, -1)
        packed = torch.cat([kl[:, None], vals, ids.to(vals.dtype)], 1).tolist()
    else:
        packed = kl[:, None].tolist()
    out: list = [None] * len(asked)
    for i, p in zip(want, packed):
        ki = asked[i]
        out[i] = (p[0], p[1 : 1 + ki], [int(x) for x in p[1 + k : 1 + k + ki]])
    return out


def _put(full: torch.Tensor, rows: torch.Tensor | None, values: torch.Tensor) -> torch.Tensor:
    """`full` with `values` written at `rows` (all rows when None)."""
    return values if rows is None else full.index_copy(0, rows, values.to(full.dtype))


class TransformersLiveBatch:
    """`LiveBatch` over a model session (`NativeSession` or `HFSession`); made by `TransformersEngine.start`."""

    def __init__(self, engine, session) -> None:
        self.engine = engine
        self.session = session
        self.usage: EngineUsage = engine.usage
        self.rows: list[_Row] = []
        self._num_requests = 0
        dev = engine.device
        self.pending = torch.zeros(0, dtype=torch.long, device=dev)  # (B,) next token to feed
        self.pos = torch.zeros(0, dtype=torch.long, device=dev)  # (B,) its rotary position
        self.temperature = torch.zeros(0, device=dev)
        self.top_k = torch.zeros(0, dtype=torch.long, device=dev)
        self.top_p = torch.ones(0, device=dev)
        self.hidden: torch.Tensor | None = None  # (B, C) hidden state that produced each row's last token
        self.capture: tuple[int, ...] = ()  # layers whose states the decode loop keeps (track_hidden_states)
        self.layer_hidden: dict[int, torch.Tensor] = {}  # layer -> (B, C) at each row's last fed visible token
        self.visible: list[bool] = []  # per row: does its pending token show text (host-side, no sync)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def request_indices(self) -> list[int]:
        return [r.request_index for r in self.rows]

    @property
    def supports_add(self) -> bool:
        return self.session.supports_add or self.session.num_rows == 0

    @property
    def is_continuous(self) -> bool:
        return self.session.supports_add

    def reserve_capacity(self, rows: int, cols: int = 0) -> None:
        """Keep room for `rows` rows (and `cols` columns) from now on, so admitting rows one request at a time
        never reallocates the cache: each reallocation zeroes and copies all of it, seconds on a CPU where
        fresh pages fault in at a few GB/s."""
        self.session.reserve_capacity(rows, cols)

    def reset(self) -> None:
        """Start the columns (and request indices) from zero again, keeping the buffers (the batch must be empty): a long-lived batch
        that empties (a server between bursts) does not carry its history's width into the next rows."""
        if self.rows:
            raise ValidationError(f"reset needs an empty batch; this one has {len(self.rows)} rows.", parameter="rows")
        self.session.maybe_compact()
        self._num_requests = 0  # request indices count from zero again too

    # -- rows in -----------------------------------------------------------------------------------------
    def encode(self, requests: list[Request], params: list[SamplingParams], *, first_request: int = 0) -> list[list[int]]:
        """Token ids of each request, checked against the model's context; errors name the request index."""
        eng, encoded = self.engine, []
        for i, (req, p) in enumerate(zip(requests, params)):
            with error_context(f"request {first_request + i}"):
                prompt_ids, partial_ids = encode_request(eng.tokenizer, req)
                ids = prompt_ids + partial_ids
                if len(ids) + p.max_tokens > eng.max_model_len:
                    raise ValidationError(
                        f"prompt ({len(ids)} tokens) + `max_tokens` ({p.max_tokens}) exceeds the model's "
                        f"context of {eng.max_model_len} tokens; lower `max_tokens` or shorten the prompt.",
                        parameter="max_tokens",
                        value=p.max_tokens,
                    )
            encoded.append(ids)
        return encoded

    def num_cached_tokens(self, encoded: Sequence[Sequence[int]]) -> list[int]:
        """Per prompt (token ids, as `encode` gives them), how many of its tokens the engine's prefix cache would
        serve if it were added now (a scheduler prices admissions by what they compute)."""
        return [self.session.num_cached_tokens(list(ids[:-1])) for ids in encoded]

    def start_prefill(self, encoded: list[list[int]]):
        """Begin prefilling these prompts (token ids, as `encode` gives them) without adding rows: `step(max_tokens)`
        the result until `done`, then pass it to `add(..., encoded=encoded, prefilled=it)`."""
        if not self.is_continuous:
            raise NotImplementedError("this live batch cannot admit rows once started")
        return self.session.start_prefill([ids[:-1] for ids in encoded])

    def add(self, requests, params=None, *, first_index: int = 0, encoded: list[list[int]] | None = None, prefilled=None) -> None:
        reqs, plist = as_lists(requests, params)
        check_first_index(first_index)
        if not reqs:
            return
        if encoded is None:
            encoded = self.encode(reqs, plist, first_request=self._num_requests)
        eng = self.engine
        prompts, lasts, new_rows = [], [], []
        for i, (ids, p) in enumerate(zip(encoded, plist)):
            prompts.append(ids[:-1])
            lasts.append(ids[-1])
            seed = p.seed if p.seed is not None else eng.next_seed()
            for j in range(first_index, first_index + p.n):
                s = derive_seed(seed, j)
                new_rows.append(
                    _Row(
                        request_index=self._num_requests + i,
                        params=p,
                        seed=s,
                        rng=random.Random(s),
                        detok=IncrementalDetokenizer(eng.tokenizer, ids),
                        num_prompt_tokens=len(ids),
                        index=j,
                        logprobs=None if p.logprobs is None else TokenLogprobs(kl_from_uniform=[]),
                    )
                )
        old = len(self.rows)
        before = self.session.num_prefilled
        if prefilled is None:
            cached = self.session.add_rows(prompts)  # one cache row per request...
        else:
            cached = self.session.add_prefilled(prefilled)
        self.usage.num_prefill_tokens += self.session.num_prefilled - before
        self.usage.num_cached_prompt_tokens += sum(cached)
        at = 0
        for i, p in enumerate(plist):
            for row in new_rows[at : at + p.n]:
                row.num_cached_tokens = cached[i]
            at += p.n
        # ...then forked to n rows, in request order, after the existing rows.
        expand = list(range(old)) + [old + i for i, p in enumerate(plist) for _ in range(p.n)]
        dev = eng.device
        self.pending = torch.cat([self.pending, torch.tensor(lasts, device=dev)])
        self.pos = torch.cat([self.pos, torch.tensor([len(p) for p in prompts], device=dev)])
        self.temperature = torch.cat([self.temperature, torch.tensor([p.temperature for p in plist], device=dev)])
        self.top_k = torch.cat([self.top_k, torch.tensor([p.top_k for p in plist], dtype=torch.long, device=dev)])
        self.top_p = torch.cat([self.top_p, torch.tensor([p.top_p for p in plist], device=dev)])
        self.visible += [eng.tokenizer.decode([t]).strip() != "" for t in lasts]
        if self.hidden is not None:
            self.hidden = torch.cat([self.hidden, self.hidden.new_zeros(len(plist), self.hidden.shape[1])])
        for i, h in self.layer_hidden.items():
            self.layer_hidden[i] = torch.cat([h, h.new_zeros(len(plist), h.shape[1])])
        self._reorder_tensors(torch.tensor(expand, device=dev))
        self.rows.extend(new_rows)
        self._num_requests += len(reqs)

    # -- row surgery -------------------------------------------------------------------------------------
    def _reorder_tensors(self, idx: torch.Tensor) -> None:
        self.session.reorder(idx)
        self.pending = self.pending[idx]
        self.pos = self.pos[idx]
        self.temperature = self.temperature[idx]
        self.top_k = self.top_k[idx]
        self.top_p = self.top_p[idx]
        self.visible = [self.visible[i] for i in idx.tolist()]
        if self.hidden is not None:
            self.hidden = self.hidden[idx]
        self.layer_hidden = {i: h[idx] for i, h in self.layer_hidden.items()}

    def reorder(self, rows: Sequence[int]) -> None:
        rows = [int(r) for r in rows]
        n = len(self.rows)
        bad = [r for r in rows if not 0 <= r < n]
        if bad:
            raise ValidationError(f"reorder got row {bad[0]}, but the batch has rows 0..{n - 1}.", parameter="rows", value=bad[0])
        seen: set[int] = set()
        new_rows = []
        for r in rows:
            new_rows.append(self.rows[r] if r not in seen else self.rows[r].fork())
            seen.add(r)
        self._reorder_tensors(torch.tensor(rows, dtype=torch.long, device=self.engine.device))
        self.rows = new_rows

    # -- generation --------------------------------------------------------------------------------------
    def advance(self, max_tokens: int | None = None, *, stop: Sequence[str] = (), confidence_stop: ConfidenceStop | None = None) -> list[StepOutput]:
        rows = range(len(self.rows))
        self.begin_advance(rows, max_tokens, stop=stop, confidence_stop=confidence_stop)
        self.usage.num_calls += 1
        while self.step():
            pass
        return self.end_advance(rows)

    # -- per-row advances (the scheduler's interface: `SteppableBatch`) ----------------------------------
    def begin_advance(self, rows: Sequence[int], max_tokens: int | None = None, *, stop: Sequence[str] = (), confidence_stop: ConfidenceStop | None = None, group: int = 0) -> None:
        """Start an advance of `rows` (as `advance` does for all rows; `confidence_stop.thresholds` has one per
        listed row). Nothing is decoded until `step`."""
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
            raise ValidationError(f"`max_tokens` must be an integer >= 1 or None, got {max_tokens!r}.", parameter="max_tokens", value=max_tokens)
        rows = [int(b) for b in rows]
        stop = list(stop)
        windows = confidence_windows([self.rows[b] for b in rows], confidence_stop)
        for i, (b, w) in enumerate(zip(rows, windows)):
            r = self.rows[b]
            r.advance = RowAdvance(
                limit=max_tokens if max_tokens is not None else r.params.max_tokens,
                stop=stop,
                start_len=len(r.text),
                window=w,
                threshold=None if w is None else confidence_stop.thresholds[i],
                group=group,
                out=StepOutput(reason=r.finish_reason),  # finished rows report their reason
            )

    def end_advance(self, rows: Sequence[int]) -> list[StepOutput]:
        """What each of `rows` produced in its advance (begun with `begin_advance`), which ends here."""
        out = []
        for b in rows:
            r = self.rows[b]
            out.append(r.advance.out if r.advance is not None else StepOutput(reason=r.finish_reason))
            r.advance = None
        return out

    def step(self, max_steps: int | None = None) -> int:
        """Decode the rows whose advance is running until each pauses or finishes, for at most `max_steps` decode
        steps, and return early once every row of some advance group is done (so its owner can go on while the
        others decode). Returns the number of decode steps run (0: nothing to do)."""
        active = [r.advance is not None and not r.advance.done and not r.advance.held for r in self.rows]
        if not any(active):
            return 0
        self.session.maybe_compact()
        steps = max(min(r.advance.limit - r.advance.out.num_tokens, r.params.max_tokens - len(r.token_ids)) for r, a in zip(self.rows, active) if a)
        if max_steps is not None:
            steps = min(steps, max_steps)
        self.session.reserve(steps + 1)
        num_steps = 0
        eos = self.engine.eos_ids
        while any(active) and num_steps < steps:
            num_steps += 1
            act = torch.tensor(active, device=self.engine.device)
            # Paused and finished rows are left out of the GEMMs and the sampling (mid-search most rows of a
            # batch may be waiting for the longest step of their problem).
            idx = None if all(active) else act.nonzero()[:, 0]
            u = torch.tensor([r.rng.random() for r, a in zip(self.rows, active) if a], device=self.engine.device)
            logits, hidden, captured = self.session.decode(self.pending, self.pos, act, self.capture, idx)  # (Ba, V), (Ba, C)
            if self.hidden is None or self.hidden.shape != (len(self.rows), hidden.shape[1]):
                self.hidden = hidden.new_zeros(len(self.rows), hidden.shape[1])
            self.hidden = _put(self.hidden, idx, hidden)
            if self.capture:
                shows = torch.tensor([v for v, a in zip(self.visible, active) if a], device=self.engine.device)
                L = self.engine.model.config.num_hidden_layers
                for i in self.capture:
                    h = hidden if i == L else captured[i]
                    old = self.layer_hidden.get(i)
                    if old is None or old.shape != self.hidden.shape:
                        old = torch.zeros_like(self.hidden)
                    self.layer_hidden[i] = _put(old, idx, torch.where(shows[:, None], h, old if idx is None else old[idx]))
            sel = slice(None) if idx is None else idx
            tokens, logprobs = sample(logits, self.temperature[sel], self.top_k[sel], self.top_p[sel], u)
            stepping = [b for b, a in enumerate(active) if a]  # rows of `logits`, in order
            extras = _logprob_extras(logits, [self.rows[b].params.logprobs for b in stepping])
            self.pos += act
            self.pending = _put(self.pending, idx, tokens)
            self.usage.num_forward_passes += 1
            self.usage.num_decoded_tokens += len(self.rows)
            tokens = _put(torch.zeros_like(self.pending), idx, tokens)
            logprobs = _put(torch.zeros(len(self.rows), device=logprobs.device), idx, logprobs)
            extra_of = dict(zip(stepping, extras))
            ended: set[int] = set()  # groups with a row that paused or finished in this step
            for b, (tok, lp) in enumerate(zip(tokens.tolist(), logprobs.tolist())):  # the one host sync
                if not active[b]:
                    continue
                row = self.rows[b]
                adv = row.advance
                o = adv.out
                o.num_tokens += 1
                self.usage.num_generated_tokens += 1
                row.cumulative_logprob += lp
                if tok in eos and not row.params.ignore_eos:
                    row.text += row.detok.flush()
                    o.text = row.text[adv.start_len :]
                    row.finish_reason = o.reason = "eos"
                    active[b] = False
                    ended.add(adv.group)
                    continue
                row.token_ids.append(tok)
                if row.logprobs is not None:
                    record_logprobs(row.logprobs, tok, lp, extra_of.get(b))
                before = len(row.text)
                piece = row.detok.push(tok)
                row.text += piece
                self.visible[b] = piece.strip() != ""
                o.text = row.text[adv.start_len :]
                reason = self._check_stops(row, before, adv.start_len, adv.stop)
                if reason is None and len(row.token_ids) >= row.params.max_tokens:
                    row.text += row.detok.flush()
                    o.text = row.text[adv.start_len :]
                    reason = row.finish_reason = "length"
                if reason is None and adv.window is not None and confidence_dropped(adv.window, row.logprobs, adv.threshold):
                    reason = "confidence"
                if reason is None and o.num_tokens >= adv.limit:
                    reason = "limit"
                if reason is not None:
                    o.reason = reason
                    active[b] = False
                    ended.add(adv.group)
            if ended and ended - {r.advance.group for r, a in zip(self.rows, active) if a}:
                break  # some group's advance is complete
        return num_steps


    @staticmethod
    def _check_stops(row: _Row, new_from: int, advance_from: int, step_stops: list[str]) -> str | None:
        """"stop" if the request's own stop string appeared, "boundary" if an advance stop did, else None."""
        final = find_stop(row.text, row.params.stop, new_from) if row.params.stop else None
        step = find_stop(row.text, step_stops, new_from, search_from=advance_from) if step_stops else None
        if final is not None and (step is None or final[1] <= step[1]):
            row.finish_reason, row.stop_reason, row.stop_index = "stop", final[0], final[1]
            return "stop"
        if step is not None:
            return "boundary"
        return None

    # -- rows out ----------------------------------------------------------------------------------------
    def completion(self, row: int, index: int | None = None) -> Completion:
        r = self.rows[row]
        text = r.text
        if r.finish_reason == "stop" and r.stop_index is not None:
            # Like vLLM: text ends at the stop string (kept only if asked), even if its token ran past it.
            end = r.stop_index + (len(r.stop_reason) if r.params.include_stop_str_in_output else 0)
            text = text[:end]
        return Completion(
            index=r.index if index is None else index,
            text=text,
            token_ids=list(r.token_ids),
            cumulative_logprob=r.cumulative_logprob,
            finish_reason=r.finish_reason,
            stop_reason=r.stop_reason,
            logprobs=None if r.logprobs is None else r.logprobs.copy(),
        )

    def _layer_index(self, layer: int) -> int:
        """transformers' `hidden_states` numbering (0 embeddings, i after layer i, -1 or L the final norm) ->
        0..L."""
        L = self.engine.model.config.num_hidden_layers
        if not isinstance(layer, int) or not -(L + 1) <= layer <= L:
            raise ValidationError(f"hidden-state layer {layer!r} is out of range for a {L}-layer model (0..{L}, or negative from the end).", parameter="layers", value=layer)
        return layer % (L + 1)

    def track_hidden_states(self, layers: Sequence[int]) -> None:
        """Keep these layers' hidden states (transformers' numbering) for every row from the next decode step
        on, at the row's last fed token that shows text, so `last_hidden_states(layers)` can hand them to a
        reward head. Costs one (B, C) select per layer per step."""
        self.capture = tuple(sorted(set(self.capture) | {self._layer_index(layer) for layer in layers}))

    def last_hidden_states(self, layers: Sequence[int] | None = None) -> torch.Tensor:
        """Hidden states of each row, (B, C x len(layers)), zeros for rows with none yet.

        `layers=None`: the final-norm state at the position that produced the row's last token (its last *fed*
        token, one before the newest). With `layers` (tracked first with `track_hidden_states`), those layers,
        concatenated, at the row's last fed token that shows text (not only whitespace): where step-level heads
        read a step (`prm_head.step_read_positions`). At a step boundary that is the step's last visible
        token whether the separator came as one token or two; at a finish, the answer's last visible token."""
        if layers is None:
            if self.hidden is None:
                return torch.zeros(len(self.rows), self.engine.model.config.hidden_size, device=self.engine.device)
            return self.hidden.clone()
        parts = []
        for layer in layers:
            i = self._layer_index(layer)
            if i not in self.capture:
                raise ValidationError(f"layer {layer} is not tracked; call `track_hidden_states([{layer}])` before advancing the batch.", parameter="layers", value=layer)
            h = self.layer_hidden.get(i)
            parts.append(h.clone() if h is not None else torch.zeros(len(self.rows), self.engine.model.config.hidden_size, device=self.engine.device))
        return torch.cat(parts, -1)

    def num_prompt_tokens(self, row: int) -> int:
        return self.rows[row].num_prompt_tokens

    def is_finished(self, row: int) -> bool:
        return self.rows[row].finish_reason is not None
