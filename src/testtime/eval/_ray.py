"""Scale-out on Ray: the pieces of a resumable run spread over K shards, each a Ray actor that builds its engine
and scorer once, on its own node; this process stays the one writer of `results.jsonl`.

Shard I of K owns the chunks `--shard I/K` would (`_shard.shard_bounds`), so its batches, and hence its rows,
are the unsharded run's. Every piece with a missing row is sent to its shard's actor at once; the actor runs
them in order and this process appends each piece's rows as it comes back (`_loop.append_rows`), so the file
is in completion order, which no summary depends on. A shard's actor is killed when its last piece is in, so
its CPUs and GPUs go to a shard still waiting for them (K may exceed what the cluster holds at once).

Faults. An actor whose process dies (its node is lost, it is killed for memory) is restarted by Ray, which runs
the call it was in again, up to `max_retries` times. A call that ran twice cannot write twice: only keys not yet
stored are appended. A Python error inside a shard is not retried (it would fail the same way): the shard stops,
the others finish and their rows are kept, then one line names the shard, its node and the cause, and rerunning
the command resumes. The worker is built on first use rather than in the actor's constructor, so a restarted
actor builds it again and a build error (a bad model path) comes back as a reply, not as an actor that never
started.
"""

from __future__ import annotations

import logging
import math
import re
import traceback
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import (
    EngineError,
    MissingDependencyError,
    TesttimeError,
    UnknownNameError,
    ValidationError,
    check,
)
from ._loop import append_rows
from ._results import ResultsFile
from ._shard import shard_bounds

__all__ = ["RayRun", "RemotePiece", "ShardWorker", "require_ray", "run_on_ray"]

DEFAULT_MAX_RETRIES = 3


@dataclass
class RayRun:
    """How a run goes on Ray: what each shard builds on its node, how many shards, and what each one holds."""

    build: Callable[[], tuple] | None = None
    """Called on each shard's node, once per actor start: returns (engine, scorer, backend), `backend` the dict
    `run.json` records of what generates (`cli._engine_args.backend_identity`) or None. It is pickled to the
    workers, so a module-level function (or a `functools.partial` of one), not a lambda of a `__main__` closure."""
    address: str | None = None
    """The cluster: "HOST:6379" of a head started with `ray start --head`, "ray://HOST:10001" (Ray Client), or
    None: the cluster this process already joined, else $RAY_ADDRESS or one started on this machine, else a new
    local one (all this machine's CPUs and GPUs)."""
    num_shards: int = 0
    """Shards K (whole chunks each, as `--shard I/K`); 0: as many as the cluster holds at once, at most one per chunk."""
    num_cpus_per_shard: float = 1.0
    """CPUs Ray reserves for each shard's actor (>= 0)."""
    num_gpus_per_shard: float = 0.0
    """GPUs each shard's actor gets (>= 0; 0.5 puts two shards on one GPU; 0 runs on CPU: Ray hides the GPUs)."""
    max_retries: int = DEFAULT_MAX_RETRIES
    """Restarts of a shard whose process dies (node lost, killed for memory); its cut-off chunk runs again."""

    def __post_init__(self) -> None:
        check(isinstance(self.num_shards, int) and self.num_shards >= 0, f"`num_shards` must be an integer >= 0 (0: auto), got {self.num_shards!r}.", parameter="num_shards", value=self.num_shards)
        check(callable(self.build), "give `build`: the function that makes (engine, scorer, backend) on a shard's node.", parameter="build")
        for name, value in (("num_cpus_per_shard", self.num_cpus_per_shard), ("num_gpus_per_shard", self.num_gpus_per_shard)):
            check(isinstance(value, (int, float)) and math.isfinite(value) and value >= 0, f"`{name}` must be a number >= 0, got {value!r}.", parameter=name, value=value)
        check(isinstance(self.max_retries, int) and self.max_retries >= 0, f"`max_retries` must be an integer >= 0, got {self.max_retries!r}.", parameter="max_retries", value=self.max_retries)


@dataclass
class RemotePiece:
    """One resumable piece of a run (`_loop.Piece`), to run on the shard that owns its chunk."""

    keys: list[Hashable]
    """The keys of the rows it writes, in the order they are appended."""
    chunk: int
    """The chunk it belongs to, which decides its shard."""
    task: Any
    """What the shard's worker is given: `worker.run(task, missing_keys)`."""


@dataclass
class ShardWorker:
    """What a shard runs, built on its node."""

    run: Callable[[Any, list], list[dict]]
    """(task, missing keys) -> rows."""
    backend: dict | None = None
    """What generates the rows (checked against `run.json`, and equal on every shard)."""


@dataclass
class _Reply:
    node: str
    rows: list[dict] | None = None
    backend: dict | None = None
    error: str | None = None
    is_usage_error: bool = False
    """The error is bad input (a `ValidationError` or `UnknownNameError`): exit status 2, like a local run."""
    is_skipped: bool = False
    """Not run: an earlier piece of the shard failed."""


class _Shard:
    """One shard's Ray actor (made remote in `run_on_ray`, so this module imports without Ray)."""

    def __init__(self, make_worker: Callable[[], ShardWorker]) -> None:
        self._make_worker = make_worker
        self._worker: ShardWorker | None = None
        self._failed = False

    def run(self, task, missing: list) -> _Reply:
        node = _this_node()
        if self._failed:  # the shard stops at its first error: the pieces after it would most likely fail the same way
            return _Reply(node=node, is_skipped=True)
        try:
            if self._worker is None:
                self._worker = self._make_worker()
            return _Reply(node=node, rows=self._worker.run(task, missing), backend=self._worker.backend)
        except Exception as exc:
            self._failed = True
            traceback.print_exc()  # into the worker's log; the driver prints one line
            if isinstance(exc, TesttimeError):
                return _Reply(node=node, error=str(exc), is_usage_error=isinstance(exc, (ValidationError, UnknownNameError)))
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return _Reply(node=node, error=f"{type(exc).__name__}: {first} (traceback in the Ray worker log on that node)")


def _this_node() -> str:
    import ray

    return f"{ray.util.get_node_ip_address()} (node {ray.get_runtime_context().get_node_id()[:8]})"


def require_ray():
    """The `ray` module, or a one-line error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", "ray", "--ray") from None
    return ray


def run_on_ray(
    pieces: list[RemotePiece],
    make_worker: Callable[[], ShardWorker],
    run: RayRun,
    *,
    num_chunks: int,
    results: ResultsFile,
    done: set,
    key: Callable[[dict], Hashable],
    on_backend: Callable[[dict | None], None],
    on_append: Callable[[RemotePiece, list[dict]], None] | None = None,
) -> None:
    """Run every piece that misses a row on its shard's actor (`make_worker()` builds the shard's worker on its
    node) and append the rows as they come back (see the module docstring). `on_backend(backend)` is called with
    the first reply's backend before its rows are written. Raises a one-line error naming the shard, its node and
    the cause when a shard fails; the rows of every piece that finished are kept."""
    todo = [p for p in pieces if any(k not in done for k in p.keys)]
    if not todo:
        return  # a finished run resumes without starting Ray
    ray = require_ray()
    started = _connect(ray, run.address)
    actors: dict[int, Any] = {}
    try:
        count = _num_shards(ray, run, num_chunks)
        owner = [i for i in range(count) for _ in range(*shard_bounds(num_chunks, i, count))]
        remote = ray.remote(_Shard).options(num_cpus=run.num_cpus_per_shard, num_gpus=run.num_gpus_per_shard, max_restarts=run.max_retries, max_task_retries=run.max_retries)
        pending: dict[Any, tuple[RemotePiece, int, list]] = {}
        for piece in todo:
            shard = owner[piece.chunk]
            if shard not in actors:
                actors[shard] = remote.remote(make_worker)
            missing = [k for k in piece.keys if k not in done]
            pending[actors[shard].run.remote(piece.task, missing)] = (piece, shard, missing)
        _gather(ray, pending, actors, count, run.max_retries, results=results, done=done, key=key, on_backend=on_backend, on_append=on_append)
    finally:
        for actor in actors.values():
            ray.kill(actor)
        if started:
            ray.shutdown()


def _gather(ray, pending: dict, actors: dict, count: int, max_retries: int, *, results, done, key, on_backend, on_append) -> None:
    failures: dict[int, _Reply] = {}
    last_node: dict[int, str] = {}
    backend: list[dict | None] = []  # the first reply's, once there is one
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        piece, shard, missing = pending.pop(ready[0])
        try:
            reply = ray.get(ready[0])
        except ray.exceptions.RayError as exc:  # the actor died more than max_retries times, or never started
            reply = _Reply(node=_node_in(exc) or last_node.get(shard, "unknown"), error=_died(ray, exc, max_retries))
        # A skipped piece (its shard failed earlier) carries no backend; its reply can arrive before the failure's.
        if reply.error is None and not reply.is_skipped and backend and reply.backend != backend[0]:
            reply.error = f"it generates with {reply.backend}, the other shards with {backend[0]}; give every node the same device and dtype (--device, --dtype, --ray-gpus-per-shard)"
        if reply.error is not None:
            failures.setdefault(shard, reply)
        elif not reply.is_skipped:
            last_node[shard] = reply.node
            if not backend:
                backend.append(reply.backend)
                on_backend(reply.backend)  # run.json agrees with what generates before any row is written
            rows = append_rows(reply.rows, missing, results, done=done, key=key)
            if on_append is not None:
                on_append(piece, rows)
        if shard in actors and all(s != shard for _, s, _ in pending.values()):
            ray.kill(actors.pop(shard))  # its CPUs and GPUs go to a shard still waiting for them
    if failures:
        shard = min(failures)
        reply = failures[shard]
        more = f"; {len(failures) - 1} more shard(s) failed too" if len(failures) > 1 else ""
        message = f"Ray shard {shard}/{count} failed on {reply.node}: {reply.error}{more}; the finished chunks are saved, rerun the same command to resume"
        raise (ValidationError if reply.is_usage_error else EngineError)(message)


def _died(ray, exc, max_retries: int) -> str:
    """One line for a Ray system error: an actor that died too often, or could not start."""
    text = str(exc)
    actor_error = ray.exceptions.RayActorError
    if isinstance(exc, actor_error) and exc.actor_init_failed:
        lines = [x.strip() for x in text.splitlines() if x.strip()]
        return f"its actor could not start ({lines[-1] if lines else type(exc).__name__})"
    if isinstance(exc, actor_error):
        # Ray's message is many lines; its "Worker exit detail" sentence is the cause (a connection error when
        # the process was killed, the OOM killer's note, ...).
        detail = re.search(r"Worker exit detail: (.*?\.)(?:\s|$)", text)
        how = detail.group(1) if detail else "no detail"
        return f"its worker process died {max_retries + 1} time(s) (killed, out of memory, or its node was lost; last: {how})"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"


def _node_in(exc) -> str | None:
    """The node address in a Ray actor error (its message has an "ip: ADDRESS" line); None when there is none."""
    m = re.search(r"\bip: (\S+)", str(exc))
    return m.group(1) if m else None


def _connect(ray, address: str | None) -> bool:
    """Join (or start) the cluster unless this process already has; True when this call did, so it also leaves."""
    if ray.is_initialized():
        return False
    # Workers import testtime from where this process does, ahead of their own path: on one machine or a shared
    # file system they run this very code; elsewhere the directory does not exist and the installed package is used.
    src = str(Path(__file__).resolve().parents[2])
    options: dict = {"runtime_env": {"env_vars": {"PYTHONPATH": f"{src}:${{PYTHONPATH}}"}}, "logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        options["include_dashboard"] = False  # a local cluster for this run only: seconds faster without it
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"cannot join the Ray cluster at {address or 'this machine'}: {first}; start one with `ray start --head` or check --ray ADDRESS") from None
    return True


def _num_shards(ray, run: RayRun, num_chunks: int) -> int:
    """K: `run.num_shards`, or as many shards as the cluster's CPUs and GPUs hold at once (at most one per chunk)."""
    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    fits = [cpus // run.num_cpus_per_shard if run.num_cpus_per_shard else math.inf, gpus // run.num_gpus_per_shard if run.num_gpus_per_shard else math.inf]
    capacity = min(fits)
    if capacity < 1:
        raise ValidationError(
            f"a Ray shard asks for {run.num_cpus_per_shard:g} CPUs and {run.num_gpus_per_shard:g} GPUs, but the cluster has "
            f"{cpus:g} CPUs and {gpus:g} GPUs; lower --ray-cpus-per-shard / --ray-gpus-per-shard or add nodes.",
            parameter="num_gpus_per_shard" if gpus < run.num_gpus_per_shard else "num_cpus_per_shard",
        )
    count = run.num_shards or int(min(capacity, num_chunks))
    if count > num_chunks:
        raise ValidationError(
            f"--ray-shards {count}: the run has {num_chunks} chunks and a shard takes whole chunks; use at most {num_chunks}, or smaller chunks.",
            parameter="num_shards",
            value=count,
        )
    return count
