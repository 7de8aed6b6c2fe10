"""The Speculative Rejection paper's evaluation (Sun et al., NeurIPS 2024) on any task and scorer.

- Best-of-N on the same engine and scorer at several N (one generation at the largest N per problem; BoN at
  a smaller N is the best of its first N candidates, which is what a run at N would have drawn).
- Per problem, the improvement score (the paper's efficiency evaluation): 100 * (r - min_N0) / (max_N0 - min_N0), where r
  is the reward of a method's choice and min/max are over the N0 candidates of the baseline BoN-N0, so BoN-N0
  scores 100 and its worst candidate 0. Problems whose N0 candidates all score the same are left out (the
  range is zero); the count is reported.
- Compute per problem: generated tokens + scorer-processed tokens, and wall time. The BoN compute that would
  reach SpR's score is interpolated linearly in log compute between the measured BoN points; outside them
  the nearest segment is extended and the number is marked as extrapolated. The ratio is the speedup.
- Accuracy of the chosen answer where the task has gold answers; the generator's perplexity of the chosen
  responses (from the sampled tokens' log-probabilities, no extra forward pass); and, with an OpenAI-compatible
  judge configured, the win rate of SpR's choice against BoN-N0's (`judge.py`).

Runs are resumable: each method's rows are appended per chunk of problems to `<out>/results.jsonl`;
rerunning the same command skips what is done. `max_minutes` stops starting new chunks after a while.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._errors import DataError, ValidationError, check
from ..engines import PromptEncoder, Request, SamplingParams
from ..grading import is_equiv
from ..scorers import ConfidenceTrace, load_scorer
from ..strategies import BestOfN, Candidate, SamplingStrategyParams, Usage
from ..strategies._select import best_of_n  # the package attribute `best_of_n` is shadowed by the submodule
from ..strategies.speculative_rejection import (
    DEFAULT_DECISION_TOKENS,
    SpeculativeRejection,
    SpeculativeRejectionParams,
)
from ..tasks import TASKS, Problem, load_task
from ._identity import differing_setting
from ._loop import Piece, run_pieces
from ._ray import RayRun, RemotePiece, ShardWorker, run_on_ray
from ._results import ResultsFile
from ._shard import read_json

MEMORY_OF_BON = "bon"
"""`kv_budget="bon"`: the paper's memory-triggered SpR, per prompt the KV memory of a BoN-`batch_n` batch."""

__all__ = ["INSTRUCTION_SELF_EVAL_PROMPT", "bench_scorer", "SprBenchConfig", "SprBenchRow", "SprBenchReport", "run_spr_bench", "analyze", "improvement_score", "bon_equivalent_compute", "format_spr_table", "plot_spr"]


INSTRUCTION_SELF_EVAL_PROMPT = (
    "Here is a user request and an assistant's response.\n\nRequest:\n{question}\n\nResponse:\n{solution}\n\n"
    "Is the response helpful, accurate and well written? Answer Yes or No."
)
"""Self-evaluation as an outcome reward for open-ended instructions (the default scorer's prompt is about math)."""


def bench_scorer(name: str, engine, task: str, **options):
    """`load_scorer(name, engine=engine, **options)`, where "default" is the task's own reward when it declares one
    (`default_scorer`: alpaca_farm's is the generator's likelihood, confidence:logprob, the paper's section 5.3).
    On the built-in open-ended instructions "default" and "self-eval" judge helpfulness: the generator's own
    P(Yes) is the reward model that works offline there (pass an ORM with --scorer orm --scorer-model ID to use
    one). `options` are the named family's (`cli._engine_args.scorer_options`: a reward model's directory, ...)."""
    task_default = getattr(TASKS.get(task), "default_scorer", None)
    if name == "default" and task_default is not None:
        return load_scorer(task_default, engine=engine)
    if task == "instructions" and name in ("default", "self-eval"):
        return load_scorer("self-eval", engine=engine, prompt=INSTRUCTION_SELF_EVAL_PROMPT)
    return load_scorer(name, engine=engine, **options)


@dataclass
class SprBenchConfig:
    """What `testtime bench spr` runs. Every field has a flag of the same name."""

    task: str = "arith"
    split: str = "test"
    data: str | None = None
    limit: int | None = 20
    offset: int = 0
    """Problems skipped first (e.g. a tuning part of the prompt file)."""
    levels: list[int] | None = None
    bon_n: list[int] | None = None
    """Best-of-N budgets; one generation at the largest per problem. None: 8, 16, ... up to SpR's initial n (at
    least 128), so the BoN-equivalent of SpR is always interpolated, never extrapolated."""
    baseline_n: int | None = None
    """N0 of the improvement score (BoN-N0 = 100); None: the smallest of `bon_n`."""
    n: int | str = 256
    """SpR's initial batch per problem, or "auto" (needs `kv_budget`)."""
    alphas: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7])
    decision_tokens: list[int] = field(default_factory=lambda: list(DEFAULT_DECISION_TOKENS))
    kv_budget: int | str | None = None
    """None: token schedule; tokens or "auto": memory-triggered decision points; "bon": the paper's setup, per
    prompt the KV memory of a BoN-`batch_n` batch (batch_n x (prompt + max_tokens) tokens)."""
    batch_n: int = 32
    """The GPU-batch cost model's N0: the BoN batch one device's memory holds (BoN-N costs N / batch_n such
    batches; the paper's is 120 on an 80 GB GPU for an 8B model)."""
    max_rows: int = 256
    """SpR rows started together (problems per batch = max(1, max_rows // n))."""
    step_aligned: bool = False
    """SpR decides only once every live candidate has finished its current step (see SpeculativeRejectionParams)."""
    partial_scores: str = "auto"
    """SpR's partial scoring: "text", "hidden" (a head on the live batch's hidden states) or "auto"."""
    scorer: str = "default"
    model: str = "default"
    seed: int = 0
    max_tokens: int = 384
    temperature: float = 0.8
    top_p: float = 1.0
    chunk: int = 4
    """Problems per chunk, the resume unit."""
    out: str = "runs/spr-bench"

    def __post_init__(self) -> None:
        if self.bon_n is None:
            top = max(128, self.n if isinstance(self.n, int) else 256)
            self.bon_n = [2**k for k in range(3, 31) if 2 ** (k - 1) < top]
        check(len(self.bon_n) > 0 and all(isinstance(x, int) and x >= 1 for x in self.bon_n), f"--bon-n must be integers >= 1, got {self.bon_n!r}.", parameter="bon_n", value=self.bon_n)
        self.bon_n = sorted(set(self.bon_n))
        if self.baseline_n is None:
            self.baseline_n = self.bon_n[0]
        check(self.baseline_n in self.bon_n, f"--baseline-n must be one of --bon-n {self.bon_n}, got {self.baseline_n!r}.", parameter="baseline_n", value=self.baseline_n)
        check(self.baseline_n >= 2, "--baseline-n must be >= 2: the improvement score divides by the reward range of its candidates.", parameter="baseline_n", value=self.baseline_n)
        check(len(self.alphas) > 0, "give at least one --alpha.", parameter="alphas")
        check(isinstance(self.chunk, int) and self.chunk >= 1, f"--chunk must be an integer >= 1, got {self.chunk!r}.", parameter="chunk", value=self.chunk)
        check(isinstance(self.batch_n, int) and self.batch_n >= 1, f"--batch-n must be an integer >= 1, got {self.batch_n!r}.", parameter="batch_n", value=self.batch_n)
        check(isinstance(self.offset, int) and self.offset >= 0, f"--offset must be an integer >= 0, got {self.offset!r}.", parameter="offset", value=self.offset)
        kv = 1 if self.kv_budget == MEMORY_OF_BON else self.kv_budget
        for a in self.alphas:  # SpeculativeRejectionParams validates every SpR knob with its own messages
            SpeculativeRejectionParams(n=self.n, alpha=a, decision_tokens=self.decision_tokens, kv_budget=kv, max_rows=self.max_rows, partial_scores=self.partial_scores, step_aligned=self.step_aligned)
        SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p)

    def identity(self) -> dict:
        """What the stored best-of-N rows depend on: a rerun with other SpR settings reuses them (its SpR rows
        get other method names), one with other BoN settings is refused. `limit` may grow."""
        keys = ["task", "split", "data", "offset", "levels", "bon_n", "scorer", "model", "seed", "max_tokens", "temperature", "top_p", "chunk"]
        return {k: getattr(self, k) for k in keys if not (k == "offset" and self.offset == 0)}

    def spr_method(self, alpha: float) -> str:
        """The method name of SpR at `alpha` with this config's SpR settings: "spr-0.5" for the defaults, with a
        suffix per setting that differs ("-n512", "-d16.32.64", "-mem" for kv_budget "bon", "-kv40000",
        "-step", "-text"), so variants of one bench sit side by side in one results file."""
        name = f"spr-{alpha:g}"
        if self.n != 256:
            name += f"-n{self.n}"
        if self.kv_budget == MEMORY_OF_BON:
            name += f"-mem{self.batch_n}"
        elif self.kv_budget is not None:
            name += f"-kv{self.kv_budget}"
        elif list(self.decision_tokens) != list(DEFAULT_DECISION_TOKENS):
            name += "-d" + ".".join(str(t) for t in self.decision_tokens)
        if self.step_aligned:
            name += "-step"
        if self.partial_scores != "auto":
            name += f"-{self.partial_scores}"
        return name


@dataclass
class SprBenchRow:
    """One line of the comparison: a BoN budget or an SpR alpha, averaged over problems."""

    method: str
    n: int
    """BoN's N, or SpR's initial n."""
    alpha: float | None
    score: float
    """Mean improvement score (BoN-N0 = 100)."""
    reward: float
    """Mean reward of the chosen response."""
    accuracy: float | None
    mean_generated_tokens: float
    mean_scored_tokens: float
    mean_compute_tokens: float
    mean_wall_time: float
    perplexity: float | None
    """Mean over problems of the generator's perplexity of the chosen response."""
    bon_equivalent_compute: float | None = None
    """BoN compute (tokens) interpolated to this method's score (SpR rows only)."""
    speedup: float | None = None
    """bon_equivalent_compute / mean_compute_tokens."""
    bon_equivalent_wall: float | None = None
    wall_speedup: float | None = None
    gen_speedup: float | None = None
    """The same ratio counting generated tokens only (what a scorer that costs nothing would give)."""
    extrapolated: bool = False
    """The score lies outside the measured BoN scores, so the BoN-equivalent extends the nearest segment."""
    mean_batch_steps: float = 0.0
    """The paper's GPU-batch cost model: decode steps of memory-full batches per problem. BoN-N runs N / batch_n
    batches of batch_n rows one after another, each as long as its longest candidate; SpR runs one batch, as
    long as its last survivor."""
    batch_equivalent: float | None = None
    """BoN batch-steps interpolated (log) to this method's score (SpR rows only)."""
    batch_speedup: float | None = None
    """batch_equivalent / mean_batch_steps: the speedup in the paper's cost model."""
    memory_ratio: float | None = None
    """Largest KV footprint of SpR's batch over the memory of a BoN-batch_n batch (<= 1: it fits, as the
    paper's model assumes; above 1 the batch model flatters SpR)."""


@dataclass
class SprBenchReport:
    rows: list[SprBenchRow]
    table: str
    num_problems: int
    num_scored_problems: int
    """Problems with a non-zero BoN-N0 reward range (the improvement score's denominator)."""
    paths: list[Path]
    judge: dict | None = None


# -- the paper's metrics ---------------------------------------------------------------------------------


def improvement_score(reward: float, baseline_rewards: Sequence[float]) -> float | None:
    """100 * (reward - min) / (max - min) over BoN-N0's candidate rewards; None when they are all equal."""
    lo, hi = min(baseline_rewards), max(baseline_rewards)
    if hi - lo <= 1e-12:
        return None
    return 100.0 * (reward - lo) / (hi - lo)


def bon_equivalent_compute(score: float, bon: Sequence[tuple[float, float]]) -> tuple[float, bool]:
    """BoN compute reaching `score`, from BoN points (compute, score) sorted by compute, interpolated linearly in
    log compute; returns (compute, extrapolated). The first segment whose scores bracket `score` is used; a
    flat BoN curve at `score` gives its cheapest point."""
    check(len(bon) >= 2, "the BoN-equivalent compute needs at least two BoN budgets.", parameter="bon_n")
    pts = sorted(bon)
    for (c0, s0), (c1, s1) in zip(pts, pts[1:]):
        if min(s0, s1) <= score <= max(s0, s1):
            if s1 == s0:
                return c0, False
            t = (score - s0) / (s1 - s0)
            return math.exp(math.log(c0) + t * (math.log(c1) - math.log(c0))), False
    (c0, s0), (c1, s1) = (pts[-2], pts[-1]) if score > pts[-1][1] else (pts[0], pts[1])
    if s1 == s0:
        return (c1 if score > s1 else c0), True
    t = (score - s0) / (s1 - s0)
    return math.exp(math.log(c0) + t * (math.log(c1) - math.log(c0))), True


def _perplexity(c: dict) -> float | None:
    """exp(-mean token logprob) of a response: from its stored per-token logprobs when there are some (the
    likelihood reward's own numbers), else from the cumulative logprob."""
    trace = (c.get("trace") or {}).get("logprob")
    if trace:
        return math.exp(-sum(trace) / len(trace))
    if c.get("cumulative_logprob") is None or not c.get("num_tokens"):
        return None
    return math.exp(-c["cumulative_logprob"] / c["num_tokens"])


def _steps(c: dict) -> int:
    """Decode steps a candidate's row ran: its tokens, plus the step that sampled end-of-sequence."""
    return c["num_tokens"] + (1 if c.get("finish_reason") == "eos" else 0)


def bon_batch_steps(candidates: Sequence[dict], n: int, batch_n: int) -> int:
    """Decode steps of BoN-n in batches of `batch_n` rows run one after another (candidates in index order),
    each batch as long as its longest row."""
    return sum(max(_steps(c) for c in candidates[s : min(s + batch_n, n)]) for s in range(0, n, batch_n))


def _mean(xs: Sequence[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


# -- running ---------------------------------------------------------------------------------------------


def _cand(c, gold: str | None) -> dict:
    return {
        "index": c.index,
        "text": c.text,
        "answer": c.answer,
        "correct": None if gold is None else (c.answer is not None and is_equiv(gold, c.answer)),
        "num_tokens": c.num_tokens,
        "finish_reason": c.finish_reason,
        "cumulative_logprob": c.cumulative_logprob,
        "score": c.score,
        "scores": c.scores,
        # per-token logprob (and self-certainty) when sampled with logprobs: SpR rules replay on BoN's samples
        **({"trace": ConfidenceTrace.from_logprobs(c.logprobs).to_dict(digits=3)} if c.logprobs is not None else {}),
    }


def _check_meta(out: Path, config: SprBenchConfig, scorer_class: str | None) -> None:
    """Refuse a run.json of other best-of-N settings, or write one. `scorer_class` None (a Ray run, before a shard
    has made its scorer) checks the flags only and writes nothing."""
    path = out / "run.json"
    # The scorer's class too: "default" resolves to whatever scorer the engine has at the time.
    new = json.loads(json.dumps(config.identity())) | ({"scorer_class": scorer_class} if scorer_class is not None else {})
    if scorer_class is None and not path.exists():
        return
    if path.exists():
        try:
            old = json.loads(path.read_text()).get("identity", {})
        except (ValueError, OSError):
            raise DataError(f"{path} is unreadable; use another --out") from None
        k = differing_setting(old, new, keys=sorted(new))
        if k is not None:
            raise ValidationError(f"{out} holds a bench with different best-of-N settings ({k}: {old.get(k)!r} there, {new.get(k)!r} now); use another --out, or the same settings to resume or add SpR variants.", parameter=k)
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"identity": new, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2))


def run_spr_bench(
    config: SprBenchConfig,
    *,
    engine=None,
    scorer=None,
    problems: Sequence[Problem] | None = None,
    judge=None,
    progress: bool = True,
    max_minutes: float | None = None,
    log: Callable[[str], None] = print,
    ray: RayRun | None = None,
) -> SprBenchReport:
    """Run (or resume) the benchmark, then analyze whatever is done; writes results, summary and plot. With `ray`,
    the chunks run on a Ray cluster's shards, each making its engine and scorer with `ray.build` on its node
    (`_ray.run_on_ray`); `engine`, `scorer` and `max_minutes` are then not given."""
    out = Path(config.out)
    if problems is None:
        problems = load_task(config.task, split=config.split, data=config.data, limit=config.limit, offset=config.offset, levels=config.levels)
    problems = list(problems)
    if not problems:
        raise DataError(f"task {config.task!r} gave no problems.")
    if ray is not None:
        check(engine is None and scorer is None, "a Ray run makes its engine and scorer on each shard; pass neither.", parameter="ray")
        check(max_minutes is None, "--max-minutes stops a run between chunks here, not on Ray: every chunk is sent at once; drop it (interrupt and rerun to resume).", parameter="max_minutes", value=max_minutes)
        _check_meta(out, config, None)  # other settings fail now, not after the first chunk
    else:
        if engine is None:
            from ..engines import TransformersEngine

            engine = TransformersEngine(config.model)
        if scorer is None:
            scorer = bench_scorer(config.scorer, engine, config.task)
        _check_meta(out, config, type(scorer).__name__)
    results = ResultsFile(out / "results.jsonl")
    done = {_row_key(r) for r in results.load()}
    methods = ["bon"] + [config.spr_method(a) for a in config.alphas]
    num_todo = sum((m, p.id) not in done for m in methods for p in problems)
    chunks = [problems[i : i + config.chunk] for i in range(0, len(problems), config.chunk)]
    bar = None
    if progress and num_todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(methods) * len(problems), initial=len(methods) * len(problems) - num_todo, desc="bench spr", unit="run", dynamic_ncols=True)
    on_append = (lambda piece, rows: bar.update(len(rows))) if bar is not None else None
    finished = True
    try:
        # One piece per chunk and method; a piece runs only its missing problems (the eval reruns whole chunks).
        if ray is not None:
            pieces = [RemotePiece([(m, p.id) for p in probs], chunk=c, task=(m, probs)) for c, probs in enumerate(chunks) for m in methods]
            check_meta = lambda backend: _check_meta(out, config, backend["scorer_class"])
            run_on_ray(pieces, functools.partial(_spr_worker, config, ray.build), ray, num_chunks=len(chunks), results=results, done=done, key=_row_key, on_backend=check_meta, on_append=on_append)
            scorer_class = read_json(out / "run.json")["identity"]["scorer_class"]
        else:
            sampling = _sampling(config)
            pieces = (Piece([(m, p.id) for p in probs], functools.partial(_run_missing, m, config, probs, engine, scorer, sampling)) for probs in chunks for m in methods)
            finished = run_pieces(pieces, results, done=done, key=_row_key, on_append=on_append, max_minutes=max_minutes)
            scorer_class = type(scorer).__name__
    finally:
        if bar is not None:
            bar.close()
    if not finished:
        log(f"stopped after {max_minutes} minutes; rerun the same command to continue")
    rows = [r for r in results.load() if r["problem_id"] in {p.id for p in problems}]
    report = analyze(rows, config, problems)
    judge_result = None
    if judge is not None:
        from .judge import judge_spr_vs_bon

        judge_result = judge_spr_vs_bon(judge, rows, config, problems, log=log)
    else:
        log("LLM-judge win rate: skipped (no judge endpoint configured; pass --judge-url and --judge-model)")
    report.judge = judge_result
    title = f"{config.task} ({report.num_problems} problems) - model {config.model}, scorer {config.scorer} ({scorer_class})"
    report.paths = plot_spr(report.rows, out, title=title, baseline_n=config.baseline_n)
    text = f"# Speculative Rejection vs best-of-N: {title}\n\n```\n{report.table}\n```\n"
    if judge_result is not None:
        text += f"\nLLM-judge win rate of SpR vs BoN-{config.baseline_n}: {json.dumps(judge_result)}\n"
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps({"rows": [asdict(r) for r in report.rows], "num_problems": report.num_problems, "num_scored_problems": report.num_scored_problems, "judge": judge_result}, indent=2))
    log(report.table)
    log(f"results: {out / 'results.jsonl'}; plot: {', '.join(str(p) for p in report.paths)}")
    return report


def _row_key(row: dict) -> tuple[str, str]:
    return (row["method"], row["problem_id"])


def _sampling(config: SprBenchConfig) -> SamplingParams:
    return SamplingParams(temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens)


def _spr_worker(config: SprBenchConfig, build) -> ShardWorker:
    """Runs on a Ray shard's node: its engine and scorer (`build()`), running pieces given as (method, problems).
    Its backend is the scorer's class, which run.json records ("default" resolves per engine)."""
    engine, scorer, _ = build()
    sampling = _sampling(config)
    return ShardWorker(run=lambda task, missing: _run_missing(task[0], config, task[1], engine, scorer, sampling, missing), backend={"scorer_class": type(scorer).__name__})


def _run_missing(method: str, config: SprBenchConfig, problems: list[Problem], engine, scorer, sampling, missing: list[tuple]) -> list[dict]:
    keys = set(missing)
    return _run_method(method, config, [p for p in problems if (method, p.id) in keys], engine, scorer, sampling)


def _run_method(method: str, config: SprBenchConfig, problems: list[Problem], engine, scorer, sampling) -> list[dict]:
    if method == "bon":
        bon = BestOfN(engine, scorer, params=SamplingStrategyParams(n=max(config.bon_n)), sampling=sampling, seed=config.seed)
        results = bon.sample(problems, scorer=scorer)
        return [
            {"method": "bon", "problem_id": p.id, "candidates": [_cand(c, p.answer) for c in r.candidates], "usage": asdict(r.usage)}
            for p, r in zip(problems, results)
        ]
    alpha = next(a for a in config.alphas if config.spr_method(a) == method)
    if config.kv_budget == MEMORY_OF_BON:
        # The paper's setup: each prompt alone, in the KV memory a BoN-`batch_n` batch of it needs.
        solved = []
        for p in problems:
            memory = config.batch_n * (_prompt_tokens(engine, p) + config.max_tokens)
            spr = _spr(config, alpha, memory, engine, scorer, sampling)
            solved.append((p, spr.solve([p])[0], spr.rounds[p.id]))
    else:
        spr = _spr(config, alpha, config.kv_budget, engine, scorer, sampling)
        solved = [(p, r, spr.rounds[p.id]) for p, r in zip(problems, spr.solve(problems))]
    rows = []
    for p, r, rounds in solved:
        rows.append(
            {
                "method": method,
                "problem_id": p.id,
                "n": len(r.candidates),
                "selected": r.selected,
                "candidates": [_cand(c, p.answer) for c in r.candidates],
                "rounds": [asdict(x) for x in rounds],
                "usage": asdict(r.usage),
            }
        )
    return rows


def _spr(config: SprBenchConfig, alpha: float, kv_budget, engine, scorer, sampling) -> SpeculativeRejection:
    params = SpeculativeRejectionParams(n=config.n, alpha=alpha, decision_tokens=config.decision_tokens, kv_budget=kv_budget, max_rows=config.max_rows, partial_scores=config.partial_scores, step_aligned=config.step_aligned, selection="best")
    return SpeculativeRejection(engine, scorer, params=params, sampling=sampling, seed=config.seed)


def _prompt_tokens(engine, problem: Problem) -> int:
    if not isinstance(engine, PromptEncoder):
        raise ValidationError(f"--kv-budget bon sizes SpR's memory from the prompt's tokens, which needs the in-process engine, not {engine!r}.", parameter="kv_budget", value=MEMORY_OF_BON)
    return len(engine.encode(Request(messages=problem.chat())))


# -- analysis --------------------------------------------------------------------------------------------


def analyze(rows: list[dict], config: SprBenchConfig, problems: Sequence[Problem]) -> SprBenchReport:
    """The comparison table from result rows, over the problems that best-of-N and every SpR method in the
    table have finished: this config's alphas, plus SpR variants of earlier runs into the same directory (a
    partial run compares what it has; methods with no rows yet are left out)."""
    by = {(r["method"], r["problem_id"]): r for r in rows}
    pids = {p.id for p in problems}
    mine = [config.spr_method(a) for a in config.alphas]
    others = sorted({m for m, pid in by if m != "bon" and m not in mine and pid in pids})
    methods = [m for m in mine + others if any(mm == m for mm, _ in by)]
    ids = [p.id for p in problems if ("bon", p.id) in by]
    methods = [m for m in methods if all((m, pid) in by for pid in ids)] or [m for m in methods if m in mine]
    ids = [pid for pid in ids if all((m, pid) in by for m in methods)]
    if not ids:
        msg = "no problem has results for best-of-N and every SpR method run so far; rerun the same command to continue"
        return SprBenchReport(rows=[], table=msg, num_problems=0, num_scored_problems=0, paths=[])
    has_gold = any(p.answer is not None for p in problems)
    n0 = config.baseline_n
    baseline = {pid: [c["score"] or 0.0 for c in by[("bon", pid)]["candidates"][:n0]] for pid in ids}
    scored = [pid for pid in ids if improvement_score(0.0, baseline[pid]) is not None]
    out: list[SprBenchRow] = []
    for N in config.bon_n:
        per = []
        for pid in ids:
            row = by[("bon", pid)]
            cands = row["candidates"][:N]
            sel = best_of_n([Candidate(score=c["score"]) for c in cands])
            chosen = cands[sel]
            gen = sum(c["num_tokens"] for c in cands)
            total_gen = sum(c["num_tokens"] for c in row["candidates"]) or 1
            chars = [len(c["text"]) for c in row["candidates"]]
            scored_tok = Usage.from_dict(row["usage"]).scored_tokens_of_first(chars, N)
            per.append((pid, chosen, gen, scored_tok, row["usage"]["wall_time"] * gen / total_gen, bon_batch_steps(row["candidates"], N, config.batch_n), None))
        out.append(_summarize("bon", N, None, per, baseline, scored, has_gold))
    for m in methods:
        per = []
        for pid in ids:
            row = by[(m, pid)]
            chosen = row["candidates"][row["selected"]] if row["selected"] is not None else {"score": 0.0, "correct": False, "num_tokens": 0}
            u = row["usage"]
            per.append((pid, chosen, u["num_generated_tokens"], u["num_scored_tokens"], u["wall_time"], max(_steps(c) for c in row["candidates"]), _memory_ratio(row, by[("bon", pid)], config)))
        alpha = next((a for a in config.alphas if config.spr_method(a) == m), None)
        if alpha is None:
            alpha = float(m.split("-")[1])
        out.append(_summarize(m, _first_n(by, m, ids), alpha, per, baseline, scored, has_gold))
    curves = {
        "compute": [(r.mean_compute_tokens, r.score) for r in out if r.method == "bon" and r.mean_compute_tokens > 0],
        "wall": [(r.mean_wall_time, r.score) for r in out if r.method == "bon" and r.mean_wall_time > 0],
        "gen": [(r.mean_generated_tokens, r.score) for r in out if r.method == "bon" and r.mean_generated_tokens > 0],
        "batch": [(r.mean_batch_steps, r.score) for r in out if r.method == "bon" and r.mean_batch_steps > 0],
    }
    for r in out:
        if r.method == "bon" or len(curves["compute"]) < 2 or r.mean_compute_tokens <= 0:
            continue
        r.bon_equivalent_compute, r.extrapolated = bon_equivalent_compute(r.score, curves["compute"])
        r.speedup = r.bon_equivalent_compute / r.mean_compute_tokens
        if len(curves["wall"]) >= 2 and r.mean_wall_time > 0:
            r.bon_equivalent_wall, _ = bon_equivalent_compute(r.score, curves["wall"])
            r.wall_speedup = r.bon_equivalent_wall / r.mean_wall_time
        if len(curves["gen"]) >= 2 and r.mean_generated_tokens > 0:
            r.gen_speedup = bon_equivalent_compute(r.score, curves["gen"])[0] / r.mean_generated_tokens
        if len(curves["batch"]) >= 2 and r.mean_batch_steps > 0:
            r.batch_equivalent, _ = bon_equivalent_compute(r.score, curves["batch"])
            r.batch_speedup = r.batch_equivalent / r.mean_batch_steps
    table = format_spr_table(out, num_problems=len(ids), num_scored=len(scored), baseline_n=n0, batch_n=config.batch_n)
    return SprBenchReport(rows=out, table=table, num_problems=len(ids), num_scored_problems=len(scored), paths=[])


def _memory_ratio(spr_row: dict, bon_row: dict, config: SprBenchConfig) -> float | None:
    """Peak KV tokens of an SpR run (live rows x (prompt + tokens) at each decision) over a BoN-batch_n batch's
    (batch_n x (prompt + longest answer)); the prompt cancels out only approximately, so it is estimated from
    the usage: prefill per problem."""
    rounds = spr_row.get("rounds") or []
    if not rounds:
        return None
    prompt = bon_row["usage"].get("num_prefill_tokens", 0) or 0
    peak = max((r["num_live"] + r["num_finished"]) * (prompt + r["num_tokens"]) for r in rounds)
    memory = config.batch_n * (prompt + config.max_tokens)
    return peak / memory if memory else None


def _first_n(by: dict, method: str, ids: list[str]) -> int:
    return by[(method, ids[0])]["n"] if ids else 0


def _summarize(method: str, n: int, alpha: float | None, per: list, baseline: dict, scored: list[str], has_gold: bool) -> SprBenchRow:
    k = max(len(per), 1)
    scores = [improvement_score(chosen["score"] or 0.0, baseline[pid]) for pid, chosen, *_ in per if pid in scored]
    ratios = [x[6] for x in per if x[6] is not None]
    return SprBenchRow(
        method=method,
        n=n,
        alpha=alpha,
        score=_mean(scores) or 0.0,
        reward=sum(chosen["score"] or 0.0 for _, chosen, *_ in per) / k,
        accuracy=(sum(bool(chosen.get("correct")) for _, chosen, *_ in per) / k) if has_gold else None,
        mean_generated_tokens=sum(x[2] for x in per) / k,
        mean_scored_tokens=sum(x[3] for x in per) / k,
        mean_compute_tokens=sum(x[2] + x[3] for x in per) / k,
        mean_wall_time=sum(x[4] for x in per) / k,
        perplexity=_mean([_perplexity(chosen) for _, chosen, *_ in per]),
        mean_batch_steps=sum(x[5] for x in per) / k,
        memory_ratio=max(ratios) if ratios else None,
    )


def format_spr_table(rows: list[SprBenchRow], *, num_problems: int, num_scored: int, baseline_n: int, batch_n: int = 32) -> str:
    w = max([9] + [len(r.method) for r in rows])
    header = (
        f"{'method':<{w}} {'n':>4} {'score':>6} {'reward':>7} {'acc':>5} {'gen tok':>8} {'scored':>8} {'compute':>8} {'wall s':>7} {'ppl':>6} "
        f"{'BoN-eq':>8} {'speedup':>8} {'wall x':>6} {'gen x':>6} | {'steps':>6} {'batch x':>7} {'mem':>5}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        acc = f"{r.accuracy:.3f}" if r.accuracy is not None else "-"
        ppl = f"{r.perplexity:.2f}" if r.perplexity is not None else "-"
        eq = f"{r.bon_equivalent_compute:.0f}" if r.bon_equivalent_compute is not None else "-"
        sp = (f"{r.speedup:.2f}x" + ("*" if r.extrapolated else "")) if r.speedup is not None else "-"
        wx = f"{r.wall_speedup:.2f}x" if r.wall_speedup is not None else "-"
        gx = f"{r.gen_speedup:.2f}x" if r.gen_speedup is not None else "-"
        bx = f"{r.batch_speedup:.2f}x" if r.batch_speedup is not None else "-"
        mem = f"{r.memory_ratio:.2f}" if r.memory_ratio is not None else "-"
        lines.append(
            f"{r.method:<{w}} {r.n:>4} {r.score:>6.1f} {r.reward:>7.3f} {acc:>5} {r.mean_generated_tokens:>8.0f} {r.mean_scored_tokens:>8.0f} "
            f"{r.mean_compute_tokens:>8.0f} {r.mean_wall_time:>7.2f} {ppl:>6} {eq:>8} {sp:>8} {wx:>6} {gx:>6} | {r.mean_batch_steps:>6.0f} {bx:>7} {mem:>5}"
        )
    lines.append(
        f"score: improvement score, BoN-{baseline_n} = 100 ({num_scored} of {num_problems} problems have a non-zero BoN-{baseline_n} reward range); "
        "token model: compute = generated + scorer-processed tokens per problem; BoN-eq: BoN compute interpolated (log) to the score; "
        "speedup = BoN-eq / compute (* = extrapolated beyond the measured BoN range); wall x: the same in wall time; "
        "gen x: the same counting generated tokens only. "
        f"Paper's GPU-batch model: steps = decode steps of memory-full batches per problem (BoN-N: N/{batch_n} batches of {batch_n} rows one "
        f"after another, each as long as its longest row; SpR: one batch, as long as its last survivor); batch x = BoN steps interpolated (log) "
        f"to the score / steps; mem = SpR's peak KV over a BoN-{batch_n} batch's (<= 1: it fits the memory the model assumes)."
    )
    return "\n".join(lines)


def plot_spr(rows: list[SprBenchRow], out_dir: Path, *, title: str = "", baseline_n: int | None = None) -> list[Path]:
    """spr_vs_bon.png: improvement score against compute in the token model and in the paper's GPU-batch model
    (and accuracy, when known), BoN per N, SpR per method."""
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    out_dir.mkdir(parents=True, exist_ok=True)
    has_acc = any(r.accuracy is not None for r in rows)
    panels = [
        ("score", "mean_compute_tokens", f"improvement score (BoN-{baseline_n} = 100)", "compute per problem (generated + scored tokens)", "speedup"),
        ("score", "mean_batch_steps", f"improvement score (BoN-{baseline_n} = 100)", "GPU-batch model: decode steps of memory-full batches", "batch_speedup"),
    ] + ([("accuracy", "mean_compute_tokens", "accuracy", "compute per problem (generated + scored tokens)", None)] if has_acc else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), dpi=120, squeeze=False)
    bon = [r for r in rows if r.method == "bon"]
    spr = [r for r in rows if r.method != "bon"]
    colors = ["tab:red", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
    for ax, (key, xkey, ylabel, xlabel, speed) in zip(axes[0], panels):
        ax.plot([getattr(r, xkey) for r in bon], [getattr(r, key) for r in bon], marker="o", color="tab:blue", label="best-of-N")
        for r in bon:
            ax.annotate(f"N={r.n}", (getattr(r, xkey), getattr(r, key)), textcoords="offset points", xytext=(4, -10), fontsize=7)
        for i, r in enumerate(spr):
            sp = f", {getattr(r, speed):.2g}x" if speed and getattr(r, speed) is not None else ""
            ax.scatter([getattr(r, xkey)], [getattr(r, key)], marker="*", s=140, color=colors[i % len(colors)], zorder=3, label=f"{r.method} (n={r.n}){sp}")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on short ranges
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = out_dir / "spr_vs_bon.png"
    fig.savefig(path)
    plt.close(fig)
    return [path]
