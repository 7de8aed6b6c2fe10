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

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._errors import DataError, ValidationError, check
from ..engines import SamplingParams
from ..grading import is_equiv
from ..scorers import load_scorer
from ..strategies import BestOfN, Candidate, SamplingStrategyParams, Usage
from ..strategies._select import best_of_n  # the package attribute `best_of_n` is shadowed by the submodule
from ..strategies.speculative_rejection import (
    DEFAULT_DECISION_TOKENS,
    SpeculativeRejection,
    SpeculativeRejectionParams,
)
from ..tasks import Problem, load_task
from ._results import ResultsFile

__all__ = ["INSTRUCTION_SELF_EVAL_PROMPT", "bench_scorer", "SprBenchConfig", "SprBenchRow", "SprBenchReport", "run_spr_bench", "analyze", "improvement_score", "bon_equivalent_compute", "format_spr_table", "plot_spr"]


INSTRUCTION_SELF_EVAL_PROMPT = (
    "Here is a user request and an assistant's response.\n\nRequest:\n{question}\n\nResponse:\n{solution}\n\n"
    "Is the response helpful, accurate and well written? Answer Yes or No."
)
"""Self-evaluation as an outcome reward for open-ended instructions (the default scorer's prompt is about math)."""


def bench_scorer(name: str, engine, task: str, *, model: str | None = None):
    """`load_scorer(name)`, except that on open-ended instructions "default" and "self-eval" judge helpfulness:
    the generator's own P(Yes) is the reward model that works offline there (pass an ORM with --scorer orm
    --scorer-model ID to use one). `model` is the reward model of the families that load their own."""
    if task == "instructions" and name in ("default", "self-eval"):
        return load_scorer("self-eval", engine=engine, prompt=INSTRUCTION_SELF_EVAL_PROMPT)
    return load_scorer(name, engine=engine, **({"model": model} if model else {}))


@dataclass
class SprBenchConfig:
    """What `testtime bench spr` runs. Every field has a flag of the same name."""

    task: str = "arith"
    split: str = "test"
    data: str | None = None
    limit: int | None = 20
    levels: list[int] | None = None
    bon_n: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128])
    """Best-of-N budgets; one generation at the largest per problem."""
    baseline_n: int | None = None
    """N0 of the improvement score (BoN-N0 = 100); None: the smallest of `bon_n`."""
    n: int | str = 256
    """SpR's initial batch per problem, or "auto" (needs `kv_budget`)."""
    alphas: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7])
    decision_tokens: list[int] = field(default_factory=lambda: list(DEFAULT_DECISION_TOKENS))
    kv_budget: int | str | None = None
    """None: token schedule; tokens or "auto": memory-triggered decision points."""
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
        check(len(self.bon_n) > 0 and all(isinstance(x, int) and x >= 1 for x in self.bon_n), f"--bon-n must be integers >= 1, got {self.bon_n!r}.", parameter="bon_n", value=self.bon_n)
        self.bon_n = sorted(set(self.bon_n))
        if self.baseline_n is None:
            self.baseline_n = self.bon_n[0]
        check(self.baseline_n in self.bon_n, f"--baseline-n must be one of --bon-n {self.bon_n}, got {self.baseline_n!r}.", parameter="baseline_n", value=self.baseline_n)
        check(self.baseline_n >= 2, "--baseline-n must be >= 2: the improvement score divides by the reward range of its candidates.", parameter="baseline_n", value=self.baseline_n)
        check(len(self.alphas) > 0, "give at least one --alpha.", parameter="alphas")
        check(isinstance(self.chunk, int) and self.chunk >= 1, f"--chunk must be an integer >= 1, got {self.chunk!r}.", parameter="chunk", value=self.chunk)
        for a in self.alphas:  # SpeculativeRejectionParams validates every SpR knob with its own messages
            SpeculativeRejectionParams(n=self.n, alpha=a, decision_tokens=self.decision_tokens, kv_budget=self.kv_budget, max_rows=self.max_rows, partial_scores=self.partial_scores, step_aligned=self.step_aligned)
        SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p)

    def identity(self) -> dict:
        keys = ["task", "split", "data", "limit", "levels", "bon_n", "n", "decision_tokens", "kv_budget", "step_aligned", "partial_scores", "scorer", "model", "seed", "max_tokens", "temperature", "top_p", "chunk"]
        return {k: getattr(self, k) for k in keys}

    def spr_method(self, alpha: float) -> str:
        return f"spr-{alpha:g}"


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
    if c.get("cumulative_logprob") is None or not c.get("num_tokens"):
        return None
    return math.exp(-c["cumulative_logprob"] / c["num_tokens"])


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
    }


def _check_meta(out: Path, config: SprBenchConfig, scorer) -> None:
    path = out / "run.json"
    # The scorer's class too: "default" resolves to whatever scorer the engine has at the time.
    new = {**json.loads(json.dumps(config.identity())), "scorer_class": type(scorer).__name__}
    if path.exists():
        old = json.loads(path.read_text()).get("identity", {})
        diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if diff:
            k = diff[0]
            raise ValidationError(f"{out} holds a bench with different settings ({k}: {old.get(k)!r} there, {new.get(k)!r} now); use another --out, or the same settings to resume.", parameter=k)
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
) -> SprBenchReport:
    """Run (or resume) the benchmark, then analyze whatever is done; writes results, summary and plot."""
    out = Path(config.out)
    if problems is None:
        problems = load_task(config.task, split=config.split, data=config.data, limit=config.limit, levels=config.levels)
    problems = list(problems)
    if not problems:
        raise DataError(f"task {config.task!r} gave no problems.")
    if engine is None:
        from ..engines import TransformersEngine

        engine = TransformersEngine(config.model)
    if scorer is None:
        scorer = bench_scorer(config.scorer, engine, config.task)
    _check_meta(out, config, scorer)
    results = ResultsFile(out / "results.jsonl")
    done = {(r["method"], r["problem_id"]) for r in results.load()}
    methods = ["bon"] + [config.spr_method(a) for a in config.alphas]
    todo = [(m, p) for m in methods for p in problems if (m, p.id) not in done]
    sampling = SamplingParams(temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens)
    chunks = [problems[i : i + config.chunk] for i in range(0, len(problems), config.chunk)]
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(methods) * len(problems), initial=len(methods) * len(problems) - len(todo), desc="bench spr", unit="run", dynamic_ncols=True)
    t_start = time.perf_counter()
    stopped = False
    try:
        for probs in chunks:
            for method in methods:
                missing = [p for p in probs if (method, p.id) not in done]
                if not missing:
                    continue
                if max_minutes is not None and time.perf_counter() - t_start > 60 * max_minutes:
                    stopped = True
                    break
                rows = _run_method(method, config, missing, engine, scorer, sampling)
                results.append(rows)
                done.update((r["method"], r["problem_id"]) for r in rows)
                if bar is not None:
                    bar.update(len(rows))
            if stopped:
                break
    finally:
        if bar is not None:
            bar.close()
    if stopped:
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
    title = f"{config.task} ({report.num_problems} problems) - model {config.model}, scorer {config.scorer} ({type(scorer).__name__})"
    report.paths = plot_spr(report.rows, out, title=title, baseline_n=config.baseline_n)
    text = f"# Speculative Rejection vs best-of-N: {title}\n\n```\n{report.table}\n```\n"
    if judge_result is not None:
        text += f"\nLLM-judge win rate of SpR vs BoN-{config.baseline_n}: {json.dumps(judge_result)}\n"
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps({"rows": [asdict(r) for r in report.rows], "num_problems": report.num_problems, "num_scored_problems": report.num_scored_problems, "judge": judge_result}, indent=2))
    log(report.table)
    log(f"results: {out / 'results.jsonl'}; plot: {', '.join(str(p) for p in report.paths)}")
    return report


def _run_method(method: str, config: SprBenchConfig, problems: list[Problem], engine, scorer, sampling) -> list[dict]:
    if method == "bon":
        bon = BestOfN(engine, scorer, params=SamplingStrategyParams(n=max(config.bon_n)), sampling=sampling, seed=config.seed)
        results = bon.sample(problems, max(config.bon_n), scorer=scorer)
        return [
            {"method": "bon", "problem_id": p.id, "candidates": [_cand(c, p.answer) for c in r.candidates], "usage": asdict(r.usage)}
            for p, r in zip(problems, results)
        ]
    alpha = float(method.removeprefix("spr-"))
    params = SpeculativeRejectionParams(n=config.n, alpha=alpha, decision_tokens=config.decision_tokens, kv_budget=config.kv_budget, max_rows=config.max_rows, partial_scores=config.partial_scores, step_aligned=config.step_aligned, selection="best")
    spr = SpeculativeRejection(engine, scorer, params=params, sampling=sampling, seed=config.seed)
    results = spr.solve(problems)
    rows = []
    for p, r in zip(problems, results):
        rows.append(
            {
                "method": method,
                "problem_id": p.id,
                "n": len(r.candidates),
                "selected": r.selected,
                "candidates": [_cand(c, p.answer) for c in r.candidates],
                "rounds": [asdict(x) for x in spr.rounds[p.id]],
                "usage": asdict(r.usage),
            }
        )
    return rows


# -- analysis --------------------------------------------------------------------------------------------


def analyze(rows: list[dict], config: SprBenchConfig, problems: Sequence[Problem]) -> SprBenchReport:
    """The comparison table from result rows, over the problems that every method run so far has finished
    (a partial run compares what it has; SpR alphas with no rows yet are left out)."""
    by = {(r["method"], r["problem_id"]): r for r in rows}
    alphas = [a for a in config.alphas if any(m == config.spr_method(a) for m, _ in by)]
    methods = [config.spr_method(a) for a in alphas]
    ids = [p.id for p in problems if ("bon", p.id) in by and all((m, p.id) in by for m in methods)]
    if not ids:
        msg = "no problem has results for best-of-N and every SpR alpha run so far; rerun the same command to continue"
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
            per.append((pid, chosen, gen, scored_tok, row["usage"]["wall_time"] * gen / total_gen))
        out.append(_summarize("bon", N, None, per, baseline, scored, has_gold))
    for a, m in zip(alphas, methods):
        per = []
        for pid in ids:
            row = by[(m, pid)]
            chosen = row["candidates"][row["selected"]] if row["selected"] is not None else {"score": 0.0, "correct": False, "num_tokens": 0}
            u = row["usage"]
            per.append((pid, chosen, u["num_generated_tokens"], u["num_scored_tokens"], u["wall_time"]))
        out.append(_summarize(m, _first_n(by, m, ids), a, per, baseline, scored, has_gold))
    bon_pts = [(r.mean_compute_tokens, r.score) for r in out if r.method == "bon" and r.mean_compute_tokens > 0]
    bon_wall = [(r.mean_wall_time, r.score) for r in out if r.method == "bon" and r.mean_wall_time > 0]
    bon_gen = [(r.mean_generated_tokens, r.score) for r in out if r.method == "bon" and r.mean_generated_tokens > 0]
    for r in out:
        if r.method != "bon" and len(bon_pts) >= 2 and r.mean_compute_tokens > 0:
            r.bon_equivalent_compute, r.extrapolated = bon_equivalent_compute(r.score, bon_pts)
            r.speedup = r.bon_equivalent_compute / r.mean_compute_tokens
            if len(bon_wall) >= 2 and r.mean_wall_time > 0:
                r.bon_equivalent_wall, _ = bon_equivalent_compute(r.score, bon_wall)
                r.wall_speedup = r.bon_equivalent_wall / r.mean_wall_time
            if len(bon_gen) >= 2 and r.mean_generated_tokens > 0:
                r.gen_speedup = bon_equivalent_compute(r.score, bon_gen)[0] / r.mean_generated_tokens
    table = format_spr_table(out, num_problems=len(ids), num_scored=len(scored), baseline_n=n0)
    return SprBenchReport(rows=out, table=table, num_problems=len(ids), num_scored_problems=len(scored), paths=[])


def _first_n(by: dict, method: str, ids: list[str]) -> int:
    return by[(method, ids[0])]["n"] if ids else 0


def _summarize(method: str, n: int, alpha: float | None, per: list, baseline: dict, scored: list[str], has_gold: bool) -> SprBenchRow:
    k = max(len(per), 1)
    scores = [improvement_score(chosen["score"] or 0.0, baseline[pid]) for pid, chosen, *_ in per if pid in scored]
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
    )


def format_spr_table(rows: list[SprBenchRow], *, num_problems: int, num_scored: int, baseline_n: int) -> str:
    header = f"{'method':<9} {'n':>4} {'score':>6} {'reward':>6} {'acc':>5} {'gen tok':>8} {'scored':>8} {'compute':>8} {'wall s':>7} {'ppl':>6} {'BoN-eq':>8} {'speedup':>8} {'wall x':>6} {'gen x':>6}"
    lines = [header, "-" * len(header)]
    for r in rows:
        acc = f"{r.accuracy:.3f}" if r.accuracy is not None else "-"
        ppl = f"{r.perplexity:.2f}" if r.perplexity is not None else "-"
        eq = f"{r.bon_equivalent_compute:.0f}" if r.bon_equivalent_compute is not None else "-"
        sp = (f"{r.speedup:.2f}x" + ("*" if r.extrapolated else "")) if r.speedup is not None else "-"
        wx = f"{r.wall_speedup:.2f}x" if r.wall_speedup is not None else "-"
        gx = f"{r.gen_speedup:.2f}x" if r.gen_speedup is not None else "-"
        lines.append(
            f"{r.method:<9} {r.n:>4} {r.score:>6.1f} {r.reward:>6.3f} {acc:>5} {r.mean_generated_tokens:>8.0f} {r.mean_scored_tokens:>8.0f} "
            f"{r.mean_compute_tokens:>8.0f} {r.mean_wall_time:>7.2f} {ppl:>6} {eq:>8} {sp:>8} {wx:>6} {gx:>6}"
        )
    lines.append(
        f"score: improvement score, BoN-{baseline_n} = 100 ({num_scored} of {num_problems} problems have a non-zero BoN-{baseline_n} reward range); "
        "compute = generated + scorer-processed tokens per problem; BoN-eq: BoN compute interpolated (log) to the score; "
        "speedup = BoN-eq / compute (* = extrapolated beyond the measured BoN range); wall x: the same in wall time; "
        "gen x: the same counting generated tokens only."
    )
    return "\n".join(lines)


def plot_spr(rows: list[SprBenchRow], out_dir: Path, *, title: str = "", baseline_n: int | None = None) -> list[Path]:
    """spr_vs_bon.png: improvement score (and accuracy, when known) against compute, BoN per N, SpR per alpha."""
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    out_dir.mkdir(parents=True, exist_ok=True)
    has_acc = any(r.accuracy is not None for r in rows)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(12 if has_acc else 7, 4.5), dpi=120, squeeze=False)
    panels = [("score", f"improvement score (BoN-{baseline_n} = 100)")] + ([("accuracy", "accuracy")] if has_acc else [])
    bon = [r for r in rows if r.method == "bon"]
    spr = [r for r in rows if r.method != "bon"]
    for ax, (key, label) in zip(axes[0], panels):
        ax.plot([r.mean_compute_tokens for r in bon], [getattr(r, key) for r in bon], marker="o", color="tab:blue", label="best-of-N")
        for r in bon:
            ax.annotate(f"N={r.n}", (r.mean_compute_tokens, getattr(r, key)), textcoords="offset points", xytext=(4, -10), fontsize=7)
        for r, color in zip(spr, ["tab:red", "tab:orange", "tab:green", "tab:purple", "tab:brown"]):
            sp = f", {r.speedup:.2g}x" if key == "score" and r.speedup is not None else ""
            ax.scatter([r.mean_compute_tokens], [getattr(r, key)], marker="*", s=140, color=color, zorder=3, label=f"SpR n={r.n}, alpha={r.alpha:g}{sp}")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on short ranges
        ax.set_xlabel("compute per problem (generated + scored tokens)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = out_dir / "spr_vs_bon.png"
    fig.savefig(path)
    plt.close(fig)
    return [path]
