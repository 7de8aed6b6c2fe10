"""`run_eval`: strategies x budgets x seeds on a task, resumable, with honest compute accounting.

Sampling strategies (majority, bon, weighted) share one generation per problem at the largest N, and the
result at each smaller n is their selection rule applied to the first n candidates: candidates are
independent, so that is exactly what a run at budget n would have drawn.

Problems run in fixed chunks (the same chunks on every run). A chunk's rows are appended as soon as it
finishes; on resume, any chunk with a missing row is run again whole and only the missing rows are written.
Re-running the whole chunk reproduces the same batch, hence the same numbers, so a resumed run ends with the
same summary as an uninterrupted one.

`run_eval` is the two halves: `run_rows` generates what `results.jsonl` lacks (the loop is `_loop.run_pieces`,
shared with `bench spr`; `run_rows_on_ray` spreads the same chunks over a Ray cluster), and `write_summary`
turns the stored rows (`_row.EvalRow`) into the table, plots, summary.md and summary.json; `testtime merge`
calls only the second.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._errors import DataError, ValidationError, check
from ..engines import SamplingParams
from ..grading import is_equiv
from ..scorers import ConfidenceTrace, load_scorer
from ..strategies import (
    SamplingStrategy,
    SolveResult,
    Strategy,
    get_strategy,
    make_strategy,
    parse_strategy_spec,
)
from ..strategies._base import with_logprobs
from ..strategies.optimal import is_resampling
from ..tasks import Problem, load_task
from ._identity import differing_setting
from ._loop import Piece, run_pieces
from ._metrics import SummaryRow, format_table, summarize
from ._plot import plot_accuracy
from ._ray import RayRun, RemotePiece, ShardWorker, run_on_ray
from ._results import ResultsFile, drop_duplicates, run_dir_lock
from ._row import EvalRow, Outcome
from ._shard import parse_shard, take_shard

__all__ = ["ChunkSolver", "EvalConfig", "EvalReport", "chunk_keys", "run_eval", "run_rows", "run_rows_on_ray", "write_summary"]

DEFAULT_N = (1, 2, 4, 8, 16)


@dataclass
class EvalConfig:
    """What to evaluate. Every field has a CLI flag of the same name (`--max-tokens` for `max_tokens`)."""

    task: str = "arith"
    split: str = "test"
    data: str | None = None
    """Local JSONL file for math500 / gsm8k / jsonl."""
    limit: int | None = None
    offset: int = 0
    """Problems skipped before the first one run (`load_task`'s offset)."""
    levels: list[int] | None = None
    strategies: list[str] = field(default_factory=lambda: ["majority", "bon", "weighted"])
    n: list[int] = field(default_factory=lambda: list(DEFAULT_N))
    """Budgets; sampling strategies generate once at max(n)."""
    scorer: str = "default"
    model: str = "default"
    seeds: list[int] = field(default_factory=lambda: [0])
    max_tokens: int = 512
    temperature: float = 0.8
    top_p: float = 1.0
    batch_problems: int = 0
    """Problems per chunk (the resume unit); 0 picks ~256 sequences per chunk."""
    out: str = "runs/eval"
    task_options: dict = field(default_factory=dict)
    """Extra task fields (jsonl `problem_field`, ...)."""
    shard: str | None = None
    """"I/K": run only shard I (0-based) of K, whole chunks; `testtime merge` joins the shards. None runs all."""
    policy: str | None = None
    """Policy file for the `optimal` strategy (written by `testtime optimize`); None when it is not run."""
    backend: dict | None = None
    """The engine the rows come from, e.g. {"engine": "transformers", "device": "cuda", "dtype": "bfloat16"} (the CLI
    fills it in from the loaded engine), so a resumed run cannot mix numerics; None is not checked (a caller's own
    engine)."""

    def __post_init__(self) -> None:
        check(len(self.strategies) > 0, "give at least one strategy.", parameter="strategies")
        for s in self.strategies:
            get_strategy(s)
            check("n" not in parse_strategy_spec(s)[1], f"strategy {s!r} sets `n`; an eval's budgets are --n (drop n= from the spec).", parameter="strategies", value=s)
        check(len(self.n) > 0, "give at least one budget --n.", parameter="n")
        for n in self.n:
            check(isinstance(n, int) and not isinstance(n, bool) and n >= 1, f"budgets --n must be integers >= 1, got {n!r}.", parameter="n", value=n)
        check(len(self.seeds) > 0, "give at least one seed.", parameter="seeds")
        check(self.policy is not None or "optimal" not in self.strategies, "strategy 'optimal' needs --policy FILE (written by `testtime optimize`).", parameter="policy")
        check(isinstance(self.batch_problems, int) and self.batch_problems >= 0, f"`batch_problems` must be >= 0, got {self.batch_problems!r}.", parameter="batch_problems", value=self.batch_problems)
        self.n = sorted(set(self.n))
        if self.shard is not None:
            parse_shard(self.shard)
        # SamplingParams validates max_tokens / temperature / top_p with its own messages.
        SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p)

    def identity(self) -> dict:
        """Settings that must match for a resumed run to continue the same experiment."""
        keys = ["task", "split", "data", "limit", "offset", "levels", "n", "scorer", "model", "max_tokens", "temperature", "top_p", "batch_problems", "task_options", "shard", "policy", "backend"]
        # offset 0 and an unknown backend are left out, so runs stored before the settings existed resume unchanged
        return {k: getattr(self, k) for k in keys if not (k == "offset" and self.offset == 0) and not (k == "backend" and self.backend is None)}

    def chunk_size(self) -> int:
        return self.batch_problems or max(1, min(64, 256 // max(self.n)))


@dataclass
class EvalReport:
    summary: list[SummaryRow]
    rows: list[dict]
    """The run's rows as stored (`EvalRow.to_dict`), one per problem, strategy and seed."""
    table: str
    paths: list[Path]


def _meta(config: EvalConfig) -> dict:
    import torch
    import transformers

    import testtime

    return {
        "identity": config.identity(),
        "versions": {"testtime": testtime.__version__, "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


RESUMABLE_CHANGES = ("limit",)
"""Identity keys a resumed run may change."""


def _check_or_write_meta(out: Path, config: EvalConfig) -> None:
    path = out / "run.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())["identity"]
        except (ValueError, KeyError, OSError):
            raise DataError(f"{path} is unreadable; move the run directory away to start over") from None
        new = json.loads(json.dumps(config.identity()))  # normalize tuples/paths as stored
        # `limit` may change: rows are keyed by problem id and a task's problem i is the same for every limit,
        # so a larger limit extends the run and a smaller one reports a subset of it. A run stored before the
        # backend was recorded gets the one it is resumed with (below); a caller's own engine is not checked.
        unknown_backend = ("backend",) if "backend" not in old or "backend" not in new else ()
        k = differing_setting(old, new, ignore=RESUMABLE_CHANGES + unknown_backend)
        if k is not None:
            raise ValidationError(
                f"{out} holds a run with different settings ({k}: {old.get(k)!r} there, {new.get(k)!r} now); "
                f"use another --out, or the same settings to resume.",
                parameter=k,
            )
        grows = old.get("limit") is not None and (new["limit"] is None or new["limit"] > old["limit"])
        if grows or ("backend" in new and "backend" not in old):
            meta = json.loads(path.read_text())
            if grows:
                meta["identity"]["limit"] = new["limit"]  # run.json names the largest limit the rows cover
            if "backend" in new:
                meta["identity"].setdefault("backend", new["backend"])
            _write_json(path, meta)
        return
    results = out / "results.jsonl"
    if results.exists() and results.stat().st_size > 0:
        raise DataError(
            f"{out} holds results.jsonl but no run.json, so the settings its rows were made with are unknown; "
            "restore run.json, or move results.jsonl away to start over"
        )
    out.mkdir(parents=True, exist_ok=True)
    _write_json(path, _meta(config))


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _candidate_dict(c, gold: str | None) -> dict:
    row = {
        "text": c.text,
        "answer": c.answer,
        "correct": None if gold is None else (c.answer is not None and is_equiv(gold, c.answer)),
        "num_tokens": c.num_tokens,
        "finish_reason": c.finish_reason,
        "score": c.score,
        "scores": c.scores,
    }
    if c.logprobs is not None:
        # Per-token logprob, token confidence and self-certainty: every confidence rule can be replayed offline.
        row["trace"] = ConfidenceTrace.from_logprobs(c.logprobs).to_dict()
    return row


def _at(result: SolveResult, gold: str | None, *, cands: list[dict], n: int, wall: float, gen: int, compute: int) -> Outcome:
    correct = None if gold is None or result.answer is None else is_equiv(gold, result.answer)
    return Outcome(
        answer=result.answer,
        selected=result.selected,
        correct=bool(correct),
        passed=any(c["correct"] for c in cands[:n]) if gold is not None else None,
        num_generated_tokens=gen,
        num_compute_tokens=compute,
        wall_time=wall,
    )


def _sampling_rows(strategies: list[SamplingStrategy], results: list[SolveResult], problems: list[Problem], ns: list[int], seed: int) -> list[EvalRow]:
    rows = []
    for p, res in zip(problems, results):
        cands = [_candidate_dict(c, p.answer) for c in res.candidates]
        chars = [len(c.text) for c in res.candidates]
        total_gen = sum(c.num_tokens for c in res.candidates) or 1
        for strat in strategies:
            by_n = {}
            for n in ns:
                chosen = strat.choose(res, n)
                gen = sum(c.num_tokens for c in res.candidates[:n])
                scored = round(res.usage.scored_tokens_of_first(chars, n)) if strat.needs_scorer else 0
                # Wall time at n < N is not measured: it is the run's time scaled by its share of tokens.
                wall = res.usage.wall_time * gen / total_gen
                by_n[n] = _at(chosen, p.answer, cands=cands, n=n, wall=wall, gen=gen, compute=gen + scored)
            rows.append(_row(p, strat.name, seed, by_n, cands, res))
    return rows


def _row(p: Problem, strategy: str, seed: int, by_n: dict[int, Outcome], cands: list[dict], res: SolveResult) -> EvalRow:
    return EvalRow(problem_id=p.id, strategy=strategy, seed=seed, level=p.level, gold=p.answer, by_n=by_n, candidates=cands, usage=asdict(res.usage))


def _solve_rows(strat: Strategy, problems: list[Problem], ns: list[int], seed: int) -> list[EvalRow]:
    """Strategies whose budget changes the search itself run once per n (greedy: once). The row's `candidates`
    are those of the largest n; each smaller n keeps its own under `by_n[n]["candidates"]`, so `optimize` can
    re-make a search's final choice at any stored budget (with the probe's answers added)."""
    budgets = [strat.fixed_budget] if strat.fixed_budget else ns
    per_problem: dict[str, dict[int, Outcome]] = {p.id: {} for p in problems}
    last: dict[str, SolveResult] = {}
    for n in budgets:
        at_n = strat.at_budget(n)
        results = at_n.solve(problems)
        choices = {c["problem_id"]: c for c in getattr(at_n, "choices", [])}  # `optimal`: what it dispatched to
        for p, res in zip(problems, results):
            cands = [_candidate_dict(c, p.answer) for c in res.candidates]
            u = res.usage
            at = _at(res, p.answer, cands=cands, n=len(cands), wall=u.wall_time, gen=u.num_generated_tokens, compute=u.num_compute_tokens)
            if n != budgets[-1]:
                at.candidates = cands
            if res.details:
                at.details = res.details
            if p.id in choices:
                at.choice = {k: v for k, v in choices[p.id].items() if k not in ("problem_id", "n")}
            per_problem[p.id][n] = at
            last[p.id] = res
    rows = []
    for p in problems:
        res = last[p.id]
        rows.append(_row(p, strat.name, seed, per_problem[p.id], [_candidate_dict(c, p.answer) for c in res.candidates], res))
    return rows


def _solve_chunk(missing: list[tuple], *, probs: list[Problem], shared: list[SamplingStrategy], others: list[Strategy], ns: list[int], seed: int, scorer) -> list[dict]:
    """The rows of one chunk for every strategy with a missing row in it. The whole chunk runs again, never a
    part of it: the same batch gives the same numbers, so a resumed run equals an uninterrupted one."""
    todo = {strategy for _, strategy, _ in missing}
    rows: list[EvalRow] = []
    if any(s.name in todo for s in shared):
        needs = any(s.needs_scorer for s in shared)
        # One generation for all of them, asking for the most logprobs any of them reads.
        k = max((s.sampling.logprobs for s in shared if s.sampling.logprobs is not None), default=None)
        sampled = shared[0].at_budget(max(ns)).sample(probs, scorer=scorer if needs else None, sampling=with_logprobs(shared[0].sampling, k))
        rows += _sampling_rows(shared, sampled, probs, ns, seed)
    for strat in others:
        if strat.name in todo:
            rows += _solve_rows(strat, probs, ns, seed)
    return [r.to_dict() for r in rows]


def _row_key(row: dict) -> tuple:
    return (row["problem_id"], row["strategy"], row["seed"])


def chunk_keys(config: EvalConfig, probs: list[Problem], seed: int) -> list[tuple]:
    """The keys of the rows one chunk writes for one seed, in the order they are appended."""
    return [(p.id, s, seed) for p in probs for s in config.strategies]


class ChunkSolver:
    """`solve(seed, probs, missing)`: the rows of one chunk of one seed (`_solve_chunk`), on one engine and scorer.
    Strategies are made once per seed and kept for the next chunks, as in an unsharded run; a Ray shard holds one
    of these on its node."""

    def __init__(self, config: EvalConfig, engine, scorer, *, use_tqdm=False) -> None:
        self.config, self.engine, self.scorer, self.use_tqdm = config, engine, scorer, use_tqdm
        self._strategies: dict[int, tuple[list[SamplingStrategy], list[Strategy]]] = {}

    def solve(self, seed: int, probs: list[Problem], missing: list[tuple]) -> list[dict]:
        if seed not in self._strategies:
            c = self.config
            sampling = SamplingParams(temperature=c.temperature, top_p=c.top_p, max_tokens=c.max_tokens)
            strategies = [make_strategy(spec, self.engine, self.scorer, sampling=sampling, seed=seed, policy=c.policy) for spec in c.strategies]
            for s in strategies:
                s.use_tqdm = self.use_tqdm
            shared = [s for s in strategies if is_resampling(type(s))]
            self._strategies[seed] = (shared, [s for s in strategies if s not in shared])
        shared, others = self._strategies[seed]
        return _solve_chunk(missing, probs=probs, shared=shared, others=others, ns=self.config.n, seed=seed, scorer=self.scorer)


def _problem_bar(config: EvalConfig, problems: list[Problem], done: set):
    """(bar, on_append): a bar of finished problems (every strategy's row stored, per seed) and the `run_pieces`
    callback that advances it as rows are appended."""
    from tqdm.auto import tqdm

    finished = sum(all((p.id, s, seed) in done for s in config.strategies) for seed in config.seeds for p in problems)
    bar = tqdm(total=len(problems) * len(config.seeds), initial=finished, desc=f"eval {config.task}", unit="problem", dynamic_ncols=True)

    def on_append(piece, rows: list[dict]) -> None:
        # A problem with a new row was unfinished before; those that now have every strategy's row are finished.
        bar.update(len({(r["problem_id"], r["seed"]) for r in rows if all((r["problem_id"], s, r["seed"]) in done for s in config.strategies)}))

    return bar, on_append


def run_rows(config: EvalConfig, chunks: list[list[Problem]], results: ResultsFile, *, engine, scorer, progress: bool = True) -> None:
    """Generate and append every row of `config` that `results` lacks, chunk by chunk (see the module docstring).
    With `progress`, a bar counts finished problems and, within a chunk, a transient bar counts the sequences
    (or a search's problems) done."""
    done = {_row_key(r) for r in results.load()}
    bar, on_append = _problem_bar(config, [p for c in chunks for p in c], done) if progress else (None, None)
    use_tqdm = False
    if progress:  # progress within a chunk: a bar the engine (or search) fills, gone when done
        from tqdm.auto import tqdm

        use_tqdm = functools.partial(tqdm, leave=False)
    solver = ChunkSolver(config, engine, scorer, use_tqdm=use_tqdm)
    pieces = (Piece(chunk_keys(config, probs, seed), functools.partial(solver.solve, seed, probs)) for seed in config.seeds for probs in chunks)
    try:
        run_pieces(pieces, results, done=done, key=_row_key, on_append=on_append)
    finally:
        if bar is not None:
            bar.close()


def run_rows_on_ray(config: EvalConfig, chunks: list[list[Problem]], results: ResultsFile, ray: RayRun, *, progress: bool = True) -> None:
    """`run_rows` with the chunks spread over Ray shards (`_ray.run_on_ray`): shard I of K solves the chunks
    `--shard I/K` would, each on its own node's engine; this process appends their rows as they arrive.
    `run.json` is checked (and completed) against the backend the shards report before their first row is written."""
    done = {_row_key(r) for r in results.load()}
    pieces = [RemotePiece(chunk_keys(config, probs, seed), chunk=c, task=(seed, probs)) for seed in config.seeds for c, probs in enumerate(chunks)]
    bar, on_append = _problem_bar(config, [p for c in chunks for p in c], done) if progress else (None, None)

    def on_backend(backend: dict | None) -> None:
        config.backend = backend
        _check_or_write_meta(Path(config.out), config)

    try:
        run_on_ray(pieces, functools.partial(_eval_worker, config, ray.build), ray, num_chunks=len(chunks), results=results, done=done, key=_row_key, on_backend=on_backend, on_append=on_append)
    finally:
        if bar is not None:
            bar.close()


def _eval_worker(config: EvalConfig, build) -> ShardWorker:
    """Runs on a shard's node: its engine and scorer (`build()`), solving chunks given as (seed, problems)."""
    engine, scorer, backend = build()
    solver = ChunkSolver(config, engine, scorer)
    return ShardWorker(run=lambda task, missing: solver.solve(*task, missing), backend=backend)


def write_summary(config: EvalConfig, problem_ids: Sequence[str], rows: list[dict], *, log=print) -> EvalReport:
    """Summarize the stored `rows` of `config` over these problems (a run's, a shard's, or merged shards'):
    print the table and write summary.md, summary.json and the plots to `config.out`."""
    out = Path(config.out)
    ids = set(problem_ids)
    rows, num_copies = drop_duplicates([r for r in rows if r["problem_id"] in ids and r["strategy"] in config.strategies and r["seed"] in config.seeds])
    # In the unsharded order (seed, problem, strategy), whatever the file's: a Ray run appends chunks as they finish,
    # and float sums in the summary depend on the order they add up in.
    rank = {pid: i for i, pid in enumerate(problem_ids)}
    rows.sort(key=lambda r: (config.seeds.index(r["seed"]), rank[r["problem_id"]], config.strategies.index(r["strategy"])))
    if num_copies:
        log(f"note: {out / 'results.jsonl'} holds {num_copies} extra copies of rows (same problem, strategy and seed, written by two evals at once); each row counts once")
    summary = summarize(rows, config.strategies)
    table = format_table(summary)
    title = f"{config.task} ({config.split}, {len(problem_ids)} problems) - model {config.model}, scorer {config.scorer}"
    paths = plot_accuracy(summary, out, title=title)
    (out / "summary.md").write_text(f"# {title}\n\n```\n{table}\n```\n")
    (out / "summary.json").write_text(json.dumps([asdict(r) for r in summary], indent=2))
    log(table)
    log(f"results: {out / 'results.jsonl'}; plots: {', '.join(str(p) for p in paths)}")
    return EvalReport(summary=summary, rows=rows, table=table, paths=paths)


def _locked(run):
    """Hold `config.out`'s writer lock while `run(config, ...)` runs: a second eval into the same directory gets
    a one-line error instead of writing every row again."""

    @functools.wraps(run)
    def locked(config: EvalConfig, **kwargs) -> EvalReport:
        with run_dir_lock(config.out):
            return run(config, **kwargs)

    return locked


@_locked
def run_eval(
    config: EvalConfig,
    *,
    engine=None,
    scorer=None,
    problems: Sequence[Problem] | None = None,
    progress: bool = True,
    log=print,
    ray: RayRun | None = None,
) -> EvalReport:
    """Run (or resume) an evaluation; print and return its summary, and write results, tables and plots
    under `config.out` (`run_rows`, then `write_summary`). With `ray`, the chunks run on a Ray cluster's shards,
    each building its engine and scorer with `ray.build` on its node (`run_rows_on_ray`); `engine` and `scorer`
    are then not given."""
    out = Path(config.out)
    if problems is None:
        problems = load_task(config.task, split=config.split, data=config.data, limit=config.limit, offset=config.offset, levels=config.levels, **config.task_options)
    problems = list(problems)
    if not problems:
        raise DataError(f"task {config.task!r} gave no problems (split {config.split!r}, levels {config.levels}, limit {config.limit}).")
    missing_gold = [p.id for p in problems if p.answer is None]
    if missing_gold:
        raise DataError(f"eval needs gold answers, but problem {missing_gold[0]!r} has none ({len(missing_gold)} in all).")
    _check_or_write_meta(out, config)  # with `ray`, the backend is checked once a shard reports it
    results = ResultsFile(out / "results.jsonl")
    chunk = config.chunk_size()
    chunks = [problems[i : i + chunk] for i in range(0, len(problems), chunk)]
    if ray is not None:
        check(engine is None and scorer is None and config.shard is None, "a Ray run builds its engine and scorer on each shard and splits the run itself; pass no engine, scorer or shard.", parameter="ray")
        run_rows_on_ray(config, chunks, results, ray, progress=progress)
        return write_summary(config, [p.id for p in problems], results.load(), log=log)
    if engine is None:
        from ..engines import TransformersEngine

        engine = TransformersEngine(config.model)
    if scorer is None and any(get_strategy(s).needs_scorer for s in config.strategies):
        scorer = load_scorer(config.scorer, engine=engine)
    if config.shard is not None:  # whole chunks, so the shard's batches are exactly the unsharded run's
        chunks = take_shard(chunks, config, out)
    run_rows(config, chunks, results, engine=engine, scorer=scorer, progress=progress)
    return write_summary(config, [p.id for c in chunks for p in c], results.load(), log=log)
