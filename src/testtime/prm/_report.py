"""PRM quality report: how well a scorer predicts final correctness from partial solutions, and what it buys
best-of-N over majority voting.

1. AUC: every sampled solution, cut after 25/50/75/100% of its steps (at least one step), scored; the AUC of
   that score for "the full solution is correct". A PRM that returns one score per step is read at the
   cut's step (its scores are causal, so this equals scoring the prefix alone); any other scorer scores the
   prefix text itself.
2. Selection: for N = 1..max_n, majority vote, naive best-of-N and weighted best-of-N over the first N of the
   same candidates (candidates are independent, so the first N of 16 are a valid sample of N), with pass@N
   (the unbiased estimate from all 16 samples of each problem).

Samples and scores are appended to `samples.jsonl` in the output directory per chunk of problems, so an
interrupted report resumes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .._errors import ValidationError
from ..engines import SamplingParams
from ..eval import ResultsFile, wilson_interval
from ..eval._metrics import pass_at_k
from ..scorers import STEP_SEPARATOR, Scorer, ScoreRequest, reduce_scores, split_steps
from ..strategies import Candidate, MajorityVote, SamplingStrategyParams
from ..strategies._base import DEFAULT_SAMPLING
from ..strategies._select import best_of_n, majority_vote, weighted_vote
from ..tasks import Problem
from ._label import is_correct
from ._metrics import FRACTIONS, auc, prefix_index

__all__ = ["ReportConfig", "PRMReport", "prm_report", "format_report", "plot_report"]

SELECTORS = {"majority": majority_vote, "bon": best_of_n, "weighted": weighted_vote}


@dataclass
class ReportConfig:
    max_n: int = 16
    """Candidates per problem; selection is reported at N = 1..max_n."""
    reduction: str = "last"
    """How per-step scores become one for best-of-N ("last", "min", "prod", "mean")."""
    sampling: SamplingParams = field(default_factory=lambda: replace(DEFAULT_SAMPLING, max_tokens=384))
    seed: int = 0
    chunk_size: int = 8
    """Problems sampled and scored together (the resume unit)."""


@dataclass
class PRMReport:
    auc: dict[float, float | None]
    """Fraction of steps -> AUC for final correctness, all solutions pooled (easy vs hard problems included)."""
    auc_within: dict[float, float | None]
    """Fraction of steps -> mean over problems (with right and wrong solutions) of the AUC among that problem's
    own solutions: the signal best-of-N can use, free of "this problem looks hard"."""
    num_solutions: int
    num_correct: int
    accuracy: dict[str, dict[int, float]]
    """Selector ("majority", "bon", "weighted", "pass") -> N -> accuracy."""
    ci: dict[str, dict[int, tuple[float, float]]]
    num_problems: int
    settings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "settings": self.settings,
            "num_problems": self.num_problems,
            "num_solutions": self.num_solutions,
            "num_correct": self.num_correct,
            "auc": {str(k): v for k, v in self.auc.items()},
            "auc_within": {str(k): v for k, v in self.auc_within.items()},
            "accuracy": {s: {str(n): a for n, a in by_n.items()} for s, by_n in self.accuracy.items()},
            "ci": {s: {str(n): list(c) for n, c in by_n.items()} for s, by_n in self.ci.items()},
        }


def _prefix_scores(scorer: Scorer, problem: Problem, texts: Sequence[str], step_scores: Sequence[Sequence[float]]) -> list[dict[str, float]]:
    """Per candidate, fraction -> score of the prefix cut at that fraction of its steps."""
    out: list[dict[str, float]] = [{} for _ in texts]
    extra, where = [], []
    for j, (text, scores) in enumerate(zip(texts, step_scores)):
        steps = split_steps(text)
        for f in FRACTIONS:
            if not steps:
                out[j][str(f)] = 0.0
                continue
            k = prefix_index(len(steps), f)
            if len(scores) == len(steps):  # a PRM: causal per-step scores, read at the cut
                out[j][str(f)] = float(scores[k])
            else:
                extra.append(STEP_SEPARATOR.join(steps[: k + 1]))
                where.append((j, str(f)))
    if extra:
        req = ScoreRequest(question=problem.question, candidates=extra, answer=problem.answer, last_number_fallback=problem.last_number_fallback, messages=problem.chat())
        for (j, f), s in zip(where, scorer.score(req)[0]):
            out[j][f] = reduce_scores(s, "last")
    return out


def _sample_rows(engine, scorer: Scorer, problems: Sequence[Problem], config: ReportConfig) -> list[dict]:
    sampler = MajorityVote(engine, params=SamplingStrategyParams(n=config.max_n), sampling=config.sampling, seed=config.seed)
    results = sampler.sample(list(problems), scorer=scorer)
    rows = []
    for p, r in zip(problems, results):
        texts = [c.text for c in r.candidates]
        prefix = _prefix_scores(scorer, p, texts, [c.scores or [] for c in r.candidates])
        rows.append(
            {
                "problem_id": p.id,
                "level": p.level,
                "answer": p.answer,
                "candidates": [
                    {"text": c.text, "answer": c.answer, "correct": is_correct(p, c.text), "scores": list(c.scores or []), "prefix_scores": ps}
                    for c, ps in zip(r.candidates, prefix)
                ],
            }
        )
    return rows


def summarize_rows(rows: Sequence[dict], *, max_n: int, reduction: str) -> PRMReport:
    """AUCs and selection accuracies from sampled, scored rows."""
    aucs, within = {}, {}
    for f in FRACTIONS:
        s = [c["prefix_scores"][str(f)] for row in rows for c in row["candidates"]]
        y = [bool(c["correct"]) for row in rows for c in row["candidates"]]
        aucs[f] = auc(s, y)
        per = [auc([c["prefix_scores"][str(f)] for c in row["candidates"]], [bool(c["correct"]) for c in row["candidates"]]) for row in rows]
        per = [a for a in per if a is not None]
        within[f] = sum(per) / len(per) if per else None
    acc: dict[str, dict[int, float]] = {k: {} for k in [*SELECTORS, "pass"]}
    ci: dict[str, dict[int, tuple[float, float]]] = {k: {} for k in acc}
    for n in range(1, max_n + 1):
        hits = dict.fromkeys(acc, 0)
        for row in rows:
            cands = [
                Candidate(index=i, text=c["text"], answer=c["answer"], scores=c["scores"], score=reduce_scores(c["scores"], reduction))
                for i, c in enumerate(row["candidates"][:n])
            ]
            for name, select in SELECTORS.items():
                sel = select(cands)
                hits[name] += bool(sel is not None and row["candidates"][sel]["correct"])
            # Unbiased pass@n over all the row's samples (Chen et al. 2021), not "a correct one among the first n".
            hits["pass"] += pass_at_k(len(row["candidates"]), sum(bool(c["correct"]) for c in row["candidates"]), n)
        for k, h in hits.items():
            acc[k][n] = h / max(len(rows), 1)
            ci[k][n] = wilson_interval(h, len(rows))
    num = sum(len(row["candidates"]) for row in rows)
    correct = sum(c["correct"] for row in rows for c in row["candidates"])
    return PRMReport(auc=aucs, auc_within=within, num_solutions=num, num_correct=correct, accuracy=acc, ci=ci, num_problems=len(rows))


def prm_report(engine, scorer: Scorer, problems: Sequence[Problem], out: str | Path, config: ReportConfig | None = None, *, settings: dict | None = None, use_tqdm: bool = True) -> PRMReport:
    """Sample `config.max_n` candidates per problem, score them, and compute the report (resumable in `out`)."""
    config = config or ReportConfig()
    for p in problems:
        if p.answer is None:
            raise ValidationError(f"problem {p.id} has no gold answer; the PRM report needs a task with gold answers.", parameter="task")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**(settings or {}), "max_n": config.max_n, "seed": config.seed, "temperature": config.sampling.temperature, "max_tokens": config.sampling.max_tokens}
    meta = out / "report_settings.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        for k, v in settings.items():
            if k in old and old[k] != v:
                raise ValidationError(f"{out} holds a report with different settings ({k}: {old[k]!r} there, {v!r} now); use another --out, or the same settings to resume.", parameter="out")
    meta.write_text(json.dumps(settings, indent=2) + "\n")
    file = ResultsFile(out / "samples.jsonl")
    have = {row["problem_id"]: row for row in file.load()}
    todo = [p for p in problems if p.id not in have]
    bar = None
    if use_tqdm:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc="prm-report", unit="problem", dynamic_ncols=True)
    for s in range(0, len(todo), config.chunk_size):
        chunk = todo[s : s + config.chunk_size]
        rows = _sample_rows(engine, scorer, chunk, config)
        file.append(rows)
        have.update((r["problem_id"], r) for r in rows)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    report = summarize_rows([have[p.id] for p in problems], max_n=config.max_n, reduction=config.reduction)
    report.settings = {**settings, "reduction": config.reduction}
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report


def format_report(report: PRMReport, *, ns: Sequence[int] = (1, 2, 4, 8, 16)) -> str:
    lines = [f"{report.num_problems} problems, {report.num_solutions} solutions ({report.num_correct} correct)", ""]
    lines.append("AUC of final correctness from the prefix")
    lines.append("  " + "  ".join(f"{int(f * 100):>3}% steps" for f in FRACTIONS))
    lines.append("  " + "  ".join(f"{(report.auc[f] if report.auc[f] is not None else float('nan')):>9.3f}" for f in FRACTIONS) + "   all solutions pooled")
    lines.append("  " + "  ".join(f"{(report.auc_within[f] if report.auc_within[f] is not None else float('nan')):>9.3f}" for f in FRACTIONS) + "   within a problem (mean)")
    lines.append("")
    ns = [n for n in ns if n in report.accuracy["majority"]]
    header = f"{'N':>4} " + " ".join(f"{k:>9}" for k in ("majority", "bon", "weighted", "pass@N"))
    lines += [header, "-" * len(header)]
    for n in ns:
        lines.append(f"{n:>4} " + " ".join(f"{report.accuracy[k][n]:>9.3f}" for k in ("majority", "bon", "weighted", "pass")))
    return "\n".join(lines)


def plot_report(report: PRMReport, path: str | Path, *, title: str = "") -> Path:
    """One PNG: AUC by fraction of steps (left), accuracy vs N per selector with 95% intervals (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    fr = [f for f in FRACTIONS if report.auc[f] is not None]
    for k, (values, label, color) in enumerate([(report.auc, "all solutions pooled", "tab:blue"), (report.auc_within, "within a problem (mean)", "tab:orange")]):
        xs = [i + (k - 0.5) * 0.38 for i in range(len(fr))]
        ys = [values[f] if values[f] is not None else 0.0 for f in fr]
        ax1.bar(xs, ys, width=0.36, color=color, label=label)
        for x, y in zip(xs, ys):
            ax1.text(x, y + 0.01, f"{y:.3f}", ha="center", fontsize=7)
    ax1.set_xticks(range(len(fr)), [f"{int(f * 100)}%" for f in fr])
    ax1.axhline(0.5, color="gray", linestyle=":", label="chance")
    ax1.set_ylim(0.4, 1.0)
    ax1.set_xlabel("prefix (share of the solution's steps)")
    ax1.set_ylabel("AUC for final correctness")
    ax1.legend(fontsize=8)
    ns = sorted(report.accuracy["majority"])
    for key, label, style in [("majority", "majority", "-"), ("bon", "best-of-N (naive)", "-"), ("weighted", "best-of-N (weighted)", "-"), ("pass", "pass@N (oracle)", "--")]:
        ys = [report.accuracy[key][n] for n in ns]
        line = ax2.plot(ns, ys, style, marker="o" if key != "pass" else None, markersize=3, label=label)[0]
        if key != "pass":
            ax2.fill_between(ns, [report.ci[key][n][0] for n in ns], [report.ci[key][n][1] for n in ns], alpha=0.12, color=line.get_color())
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("N (candidates per problem)")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
