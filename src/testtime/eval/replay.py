"""Replay confidence rules on a stored run: no generation, only the candidates' stored traces.

An eval run whose candidates carry traces (`results.jsonl` rows of `majority`, `deepconf`, ... sampled with
logprobs) holds, per problem, N independent samples with every token's logprob and confidence. Because the
early-stopping strategies draw the same seeded samples (sample j of `deepconf-online` or `adaptive` is sample j
of `majority`), what they would answer and spend at any budget n <= N can be computed from those traces:

- calibration: how well each confidence metric separates right from wrong answers (AUC within a problem,
  the signal a vote over one problem's samples uses, and pooled over problems);
- `majority`, `deepconf` (offline), `deepconf-online` and `adaptive` at each budget: accuracy, generated
  tokens, and a paired comparison with majority at the same n (exact McNemar p).

The online simulation follows `DeepConfOnline` step for step (warm-up, percentile threshold, the drop point of
each trace's sliding window, consensus checks every `check_every` tokens with the remaining traces running side
by side); tests check it against the strategy itself. Stored confidences are rounded to 4 decimals, so a
threshold comparison can rarely differ from a live run's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._errors import DataError
from ..engines._confidence import WindowMean
from ..grading import is_equiv
from ..scorers import CONFIDENCE_METRICS, ConfidenceTrace, confidence_metric
from ..strategies import AdaptiveParams, Candidate, DeepConfOnlineParams, DeepConfParams
from ..strategies._confidence import confidence_threshold, confidence_vote
from ..strategies._select import majority_vote, weighted_vote
from ..strategies.adaptive import stop_probability
from ..strategies.deepconf_online import _Problem
from ..tasks import Problem
from ._metrics import auc, mcnemar_p, wilson_interval
from ._results import ResultsFile

__all__ = ["StoredProblem", "load_stored", "calibration", "compare_stored", "replay_rules", "ReplayRow", "simulate_online", "format_replay"]


@dataclass
class StoredProblem:
    """One problem's stored samples."""

    problem_id: str
    gold: str | None
    candidates: list[Candidate]
    correct: list[bool]
    traces: list[ConfidenceTrace]
    finish: list[str | None] = field(default_factory=list)


def load_stored(run_dir: str | Path, *, strategy: str = "majority", seed: int | None = None) -> list[StoredProblem]:
    """The samples of `strategy`'s rows (one seed: the first found unless given), with their traces."""
    path = Path(run_dir) / "results.jsonl"
    if not path.is_file():
        raise DataError(f"{run_dir} holds no results.jsonl; pass the directory of a `testtime eval` run")
    out, seen = [], set()
    for row in ResultsFile(path).load():
        if row.get("strategy") != strategy or row["problem_id"] in seen:
            continue
        if seed is None:
            seed = row.get("seed")
        if row.get("seed") != seed:
            continue
        cands = row.get("candidates") or []
        if not cands or any("trace" not in c for c in cands):
            raise DataError(f"{path}: the {strategy!r} row of problem {row['problem_id']!r} has candidates without a stored trace; rerun the eval with a strategy that asks for logprobs (deepconf, or --scorer confidence:METRIC)")
        seen.add(row["problem_id"])
        out.append(
            StoredProblem(
                problem_id=row["problem_id"],
                gold=row.get("gold"),
                candidates=[Candidate(index=j, text="", num_tokens=c["num_tokens"], finish_reason=c["finish_reason"], answer=c["answer"]) for j, c in enumerate(cands)],
                correct=[bool(c["correct"]) for c in cands],
                traces=[ConfidenceTrace.from_dict(c["trace"]) for c in cands],
                finish=[c["finish_reason"] for c in cands],
            )
        )
    if not out:
        raise DataError(f"{path} has no {strategy!r} rows" + (f" for seed {seed}" if seed is not None else ""))
    return out


# -- calibration ---------------------------------------------------------------------------------------------


def calibration(problems: Sequence[StoredProblem], *, windows: Sequence[int] = (8, 16, 32, 64), tails: Sequence[int] = (16, 32, 64)) -> list[dict]:
    """Per metric (and window or tail size), the AUC of confidence against correctness over answered samples:
    within a problem (averaged over problems with right and wrong answers) and pooled over all."""
    variants: list[tuple[str, dict]] = []
    for m in CONFIDENCE_METRICS:
        if m in ("group", "lowest-group", "bottom10-group"):
            variants += [(m, {"window": w}) for w in windows]
        elif m == "tail":
            variants += [(m, {"tail": t}) for t in tails]
        else:
            variants.append((m, {}))
    out = []
    for metric, kw in variants:
        pooled_s, pooled_y, within = [], [], []
        for p in problems:
            idx = [j for j, c in enumerate(p.candidates) if c.answer is not None]
            s = [confidence_metric(p.traces[j], metric, **kw) for j in idx]
            y = [p.correct[j] for j in idx]
            pooled_s += s
            pooled_y += y
            a = auc(s, y)
            if a is not None:
                within.append(a)
        out.append({"metric": metric, **kw, "auc_within": sum(within) / len(within) if within else None, "num_problems_within": len(within), "auc_pooled": auc(pooled_s, pooled_y), "num_samples": len(pooled_s)})
    return out


# -- rules -----------------------------------------------------------------------------------------------------


def _drop_step(trace: ConfidenceTrace, threshold: float, window: int, finish: str | None) -> int | None:
    """Tokens a trace has when its window confidence first falls below `threshold` (None: never). A trace
    whose last token ended it (a stop string or max_tokens) is not checked at that token, like the engine."""
    wm = WindowMean(window)
    last = len(trace.confidence) - (0 if finish == "eos" else 1)
    for t, c in enumerate(trace.confidence[: max(last, 0)], 1):
        wm.push(c)
        if wm.full and wm.mean < threshold:
            return t
    return None


def simulate_online(p: StoredProblem, n: int, params: DeepConfOnlineParams) -> tuple[str | None, int, dict]:
    """What `DeepConfOnline` answers and generates (tokens in the candidates) on the first n stored samples."""
    warm = params.warmup_for(n)
    st = _Problem(problem=Problem(id=p.problem_id), candidates=[Candidate(index=j) for j in range(n)], confidences={})
    tokens = 0

    def finish(j: int) -> None:
        st.candidates[j] = p.candidates[j]
        st.confidences[j] = confidence_metric(p.traces[j], params.metric, window=params.window, tail=params.tail)

    for j in range(warm):
        finish(j)
        tokens += p.candidates[j].num_tokens
    st.threshold = confidence_threshold([st.confidences[j] for j in range(warm)], params.keep)
    done = warm >= n or st.settled(params.metric, params.consensus)
    # Each remaining trace ends (finishes or drops) at a decode step; the batch advances `check_every` steps
    # between checks, so a check at step T sees every trace that ended by T.
    ends = {}
    for j in range(warm, n):
        c = p.candidates[j]
        drop = _drop_step(p.traces[j], st.threshold, params.window, c.finish_reason)
        if drop is not None:
            ends[j] = (drop, "low", drop)
        else:
            ends[j] = (c.num_tokens + (1 if c.finish_reason == "eos" else 0), "done", c.num_tokens)
    running = [] if done else list(range(warm, n))
    t = 0
    while running:
        t += params.check_every
        still = []
        for j in running:
            step, how, toks = ends[j]
            if step > t:
                still.append(j)
                continue
            tokens += toks
            if how == "done":
                finish(j)
            else:
                st.stopped_low += 1
        if not done and st.settled(params.metric, params.consensus):
            done = True
        if done:
            tokens += t * len(still)  # stopped where they are
            st.stopped_consensus += len(still)
            still = []
        running = still
    voters = st.voters(params.metric)
    pick = weighted_vote(voters)
    if pick is None:  # as the strategy: the most confident finished trace, the first on ties
        best = min(st.confidences, key=lambda j: (-st.confidences[j], j), default=None)
        answer = None if best is None else p.candidates[best].answer
    else:
        answer = voters[pick].answer
    return answer, tokens, {"threshold": st.threshold, "stopped_low_confidence": st.stopped_low, "stopped_by_consensus": st.stopped_consensus}


def simulate_adaptive(p: StoredProblem, n: int, params: AdaptiveParams) -> tuple[str | None, int, int]:
    """What `AdaptiveConsistency` answers, generates and samples on the first n stored samples."""
    used = 0
    while used < n:
        used += min(params.wave, n - used)
        if stop_probability(p.candidates[:used], params.rule) >= params.threshold:
            break
    sel = majority_vote(p.candidates[:used])
    return (None if sel is None else p.candidates[sel].answer), sum(c.num_tokens for c in p.candidates[:used]), used


@dataclass
class ReplayRow:
    rule: str
    n: int
    num_problems: int
    accuracy: float
    ci_low: float
    ci_high: float
    mean_generated_tokens: float
    tokens_vs_majority: float
    """Mean generated tokens over majority@n's, on the same problems."""
    only_rule: int
    """Problems this rule answers right and majority@n wrong."""
    only_majority: int
    mcnemar_p: float


def _is_right(p: StoredProblem, answer: str | None) -> bool:
    return answer is not None and p.gold is not None and is_equiv(p.gold, answer)


def replay_rules(problems: Sequence[StoredProblem], ns: Sequence[int], rules: dict[str, DeepConfParams | DeepConfOnlineParams | AdaptiveParams | None]) -> list[ReplayRow]:
    """Each rule (None: majority) at each budget n, against majority@n on the same problems."""
    out = []
    for n in ns:
        usable = [p for p in problems if len(p.candidates) >= n]
        maj_right, maj_tokens = [], []
        for p in usable:
            sel = majority_vote(p.candidates[:n])
            maj_right.append(sel is not None and p.correct[sel])
            maj_tokens.append(sum(c.num_tokens for c in p.candidates[:n]))
        for name, params in rules.items():
            right, tokens = [], []
            for p in usable:
                if params is None:
                    sel = majority_vote(p.candidates[:n])
                    right.append(sel is not None and p.correct[sel])
                    tokens.append(sum(c.num_tokens for c in p.candidates[:n]))
                elif isinstance(params, DeepConfOnlineParams):
                    answer, used, _ = simulate_online(p, n, params)
                    right.append(_is_right(p, answer))
                    tokens.append(used)
                elif isinstance(params, AdaptiveParams):
                    answer, used, _ = simulate_adaptive(p, n, params)
                    right.append(_is_right(p, answer))
                    tokens.append(used)
                else:
                    confs = [confidence_metric(t, params.metric, window=params.window, tail=params.tail) for t in p.traces[:n]]
                    sel, _ = confidence_vote(p.candidates[:n], confs, keep=params.keep, metric=params.metric)
                    right.append(sel is not None and p.correct[sel])
                    tokens.append(sum(c.num_tokens for c in p.candidates[:n]))
            k = len(usable)
            lo, hi = wilson_interval(sum(right), k)
            a = sum(r and not m for r, m in zip(right, maj_right))
            b = sum(m and not r for r, m in zip(right, maj_right))
            out.append(ReplayRow(name, n, k, sum(right) / max(k, 1), lo, hi, sum(tokens) / max(k, 1), sum(tokens) / max(sum(maj_tokens), 1), a, b, mcnemar_p(a, b)))
    return out


def compare_stored(run_dir: str | Path, *, baseline: str = "majority") -> list[ReplayRow]:
    """The strategies a run actually ran (live rows, every stored budget), each against `baseline` at the same n
    on the same problems and seed: accuracy, generated tokens, and the paired McNemar test."""
    rows = ResultsFile(Path(run_dir) / "results.jsonl").load()
    base = {(r["problem_id"], r["seed"], n): at for r in rows if r["strategy"] == baseline for n, at in r["by_n"].items()}
    groups: dict[tuple[str, int], list[tuple[dict, dict]]] = {}
    for r in rows:
        for n, at in r["by_n"].items():
            b = base.get((r["problem_id"], r["seed"], n))
            if b is not None:
                groups.setdefault((r["strategy"], int(n)), []).append((at, b))
    out = []
    for (name, n), pairs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0] != baseline, kv[0][0])):
        k = len(pairs)
        right = sum(bool(a["correct"]) for a, _ in pairs)
        lo, hi = wilson_interval(right, k)
        only_a = sum(bool(a["correct"]) and not b["correct"] for a, b in pairs)
        only_b = sum(bool(b["correct"]) and not a["correct"] for a, b in pairs)
        gen = sum(a["num_generated_tokens"] for a, _ in pairs)
        base_gen = sum(b["num_generated_tokens"] for _, b in pairs) or 1
        out.append(ReplayRow(name, n, k, right / k, lo, hi, gen / k, gen / base_gen, only_a, only_b, mcnemar_p(only_a, only_b)))
    return out


def format_replay(rows: Sequence[ReplayRow], calib: Sequence[dict] | None = None) -> str:
    lines = []
    if calib:
        lines.append(f"{'metric':<16} {'window/tail':>11} {'AUC within':>10} {'AUC pooled':>10}")
        lines.append("-" * 50)
        for c in calib:
            size = c.get("window") or c.get("tail") or "-"
            aw = f"{c['auc_within']:.3f}" if c["auc_within"] is not None else "-"
            ap = f"{c['auc_pooled']:.3f}" if c["auc_pooled"] is not None else "-"
            lines.append(f"{c['metric']:<16} {size!s:>11} {aw:>10} {ap:>10}")
        lines.append(f"AUC within: mean over {calib[0]['num_problems_within']} problems with right and wrong answered samples; pooled: {calib[0]['num_samples']} answered samples.")
        lines.append("")
    w = max([28] + [len(r.rule) for r in rows])
    header = f"{'rule':<{w}} {'n':>3} {'acc':>6} {'95% CI':>15} {'gen tok':>8} {'vs maj':>7} {'+/-':>7} {'McNemar p':>9}"
    lines += [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.rule:<{w}} {r.n:>3} {r.accuracy:>6.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] {r.mean_generated_tokens:>8.0f} {r.tokens_vs_majority:>6.2f}x {f'+{r.only_rule}/-{r.only_majority}':>7} {r.mcnemar_p:>9.3f}")
    lines.append("vs maj: generated tokens over majority@n's on the same problems; +/-: problems only this rule / only majority answers right (paired).")
    return "\n".join(lines)


def write_replay(out: Path, rows: Sequence[ReplayRow], calib: Sequence[dict], live: Sequence[ReplayRow] = ()) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {"calibration": list(calib), "rules": [asdict(r) for r in rows], "live": [asdict(r) for r in live]}
    (out / "replay.json").write_text(json.dumps(data, indent=2))

