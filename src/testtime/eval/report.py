"""`build_report`: one self-contained HTML page (and a Markdown twin) from one or more eval run directories.

What it shows, following the reference blog and Snell et al. 2024:
- accuracy vs budget N (log2) for every strategy, and vs measured compute (generated + scored tokens);
- accuracy by difficulty level and budget (grouped bars per level, one panel per budget);
- the compute-optimal curve (the `optimal` strategy's, when a run has it) next to every single strategy, with
  the per-level best in hindsight as an upper bound, and a larger model's greedy accuracy as a reference line;
- tables with 95% Wilson intervals, the learned policy when given, and every run's metadata.

Difficulty levels are the oracle levels of a difficulty file (`testtime difficulty`) for the problems it
covers, else the task's own levels (arith, MATH).
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .._errors import DataError
from ..strategies.optimal import Policy
from ._metrics import PASS_AT_N_NOTE, SummaryRow, samples_independently, summarize, wilson_interval
from ._report_html import Heading, Image, Table, Text, render_html, render_markdown
from ._results import ResultsFile, drop_duplicates
from .difficulty import Difficulty

__all__ = ["RunData", "Reference", "load_run", "build_report"]

_MAX_BAR_PANELS = 6


@dataclass
class RunData:
    path: Path
    meta: dict
    rows: list[dict]


@dataclass
class Reference:
    """A horizontal reference line: e.g. a larger model's greedy accuracy."""

    accuracy: float
    label: str


def load_run(path: str | Path) -> RunData:
    """A run directory's metadata and result rows (read only: a row being written is skipped, a row written
    twice counts once)."""
    path = Path(path)
    results = path / "results.jsonl"
    if not results.exists():
        raise DataError(f"{path} is not an eval run directory (no results.jsonl); pass the --out of `testtime eval`.")
    meta = {}
    if (path / "run.json").exists():
        try:
            meta = json.loads((path / "run.json").read_text())
        except ValueError:
            raise DataError(f"{path / 'run.json'} is not valid JSON.") from None
    rows = drop_duplicates(ResultsFile(results).load())[0]
    if not rows:
        raise DataError(f"{results} holds no results yet.")
    return RunData(path=path, meta=meta, rows=rows)


def reference_from_run(path: str | Path) -> Reference:
    """The greedy accuracy of a run (e.g. a larger model's `eval --strategy greedy --n 1`)."""
    run = load_run(path)
    rows = [r for r in run.rows if r["strategy"] == "greedy"] or run.rows
    ats = [r["by_n"][min(r["by_n"], key=int)] for r in rows]
    acc = sum(bool(a["correct"]) for a in ats) / len(ats)
    model = run.meta.get("identity", {}).get("model", run.path.name)
    strategy = rows[0]["strategy"]
    return Reference(accuracy=acc, label=f"{model} {strategy} ({len(ats)} problems)")


def _series(runs: list[RunData]) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """(label -> rows, label -> strategy); a label is the strategy name alone unless two runs share it."""
    count: dict[str, int] = defaultdict(int)
    for run in runs:
        for s in dict.fromkeys(r["strategy"] for r in run.rows):
            count[s] += 1
    out: dict[str, list[dict]] = {}
    strategy_of: dict[str, str] = {}
    for run in runs:
        for r in run.rows:
            label = r["strategy"] if count[r["strategy"]] == 1 else f"{r['strategy']} ({run.path.name})"
            out.setdefault(label, []).append({**r, "strategy": label})
            strategy_of[label] = r["strategy"]
    return out, strategy_of


def _levels(series: dict[str, list[dict]], difficulty: Difficulty | None) -> dict[str, int]:
    oracle = difficulty.levels("oracle") if difficulty else {}
    out = {}
    for rows in series.values():
        for r in rows:
            lv = oracle.get(r["problem_id"], r.get("level"))
            if lv is not None:
                out[r["problem_id"]] = int(lv)
    return out


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _plot_curves(summary: dict[str, list[SummaryRow]], x_key: str, xlabel: str, title: str, reference: Reference | None, *, highlight: str | None = None, hindsight: list[tuple[int, float]] | None = None) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=110)
    for label, rows in summary.items():
        xs = [getattr(r, x_key) for r in rows]
        ys = [r.accuracy for r in rows]
        if len(rows) == 1 and x_key == "n":  # budget-free baselines (greedy) as a line
            ax.axhline(ys[0], linestyle=":", color="gray", label=f"{label} ({ys[0]:.2f})")
            continue
        bold = label == highlight
        line = ax.plot(xs, ys, marker="o", label=label, linewidth=2.8 if bold else 1.4, zorder=3 if bold else 2)[0]
        ax.fill_between(xs, [r.ci_low for r in rows], [r.ci_high for r in rows], alpha=0.12, color=line.get_color())
    if hindsight:
        ax.plot([n for n, _ in hindsight], [a for _, a in hindsight], linestyle="--", color="black", alpha=0.7, label="per-level best (hindsight)")
    if reference is not None:
        ax.axhline(reference.accuracy, color="crimson", linestyle="-.", label=f"{reference.label}: {reference.accuracy:.2f}")
    ax.set_xscale("log", base=2 if x_key == "n" else 10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _png(fig)


def _by_level(series: dict[str, list[dict]], levels: dict[str, int]) -> dict[tuple[str, int, int], tuple[int, int]]:
    """(label, N, level) -> (correct, total)."""
    out: dict[tuple[str, int, int], list[int]] = defaultdict(lambda: [0, 0])
    for label, rows in series.items():
        for r in rows:
            lv = levels.get(r["problem_id"])
            if lv is None:
                continue
            for n, at in r["by_n"].items():
                cell = out[(label, int(n), lv)]
                cell[0] += bool(at["correct"])
                cell[1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def _plot_levels(cells: dict[tuple[str, int, int], tuple[int, int]], labels: list[str], budgets: list[int], level_list: list[int]) -> bytes:
    plt = _pyplot()
    cols = min(3, len(budgets))
    rows = (len(budgets) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), dpi=100, squeeze=False, sharey=True)
    width = 0.8 / max(len(labels), 1)
    for i, n in enumerate(budgets):
        ax = axes[i // cols][i % cols]
        for j, label in enumerate(labels):
            xs, ys, errs = [], [], [[], []]
            for lv in level_list:
                c, t = cells.get((label, n, lv), (0, 0))
                if t == 0:
                    continue
                acc = c / t
                lo, hi = wilson_interval(c, t)
                xs.append(lv + (j - (len(labels) - 1) / 2) * width)
                ys.append(acc)
                errs[0].append(acc - lo)
                errs[1].append(hi - acc)
            ax.bar(xs, ys, width=width, yerr=errs, capsize=2, label=label, error_kw={"elinewidth": 0.7, "alpha": 0.6})
        ax.set_title(f"N = {n}", fontsize=10)
        ax.set_xticks(level_list)
        ax.set_xlabel("difficulty level (1 easiest)")
        ax.set_ylim(0, 1.05)
        ax.grid(True, axis="y", alpha=0.3)
        if i % cols == 0:
            ax.set_ylabel("accuracy")
    for k in range(len(budgets), rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    return _png(fig)


def _hindsight(cells: dict[tuple[str, int, int], tuple[int, int]], labels: list[str], budgets: list[int], level_list: list[int]) -> list[tuple[int, float]]:
    """Per N: accuracy if each level used its best strategy on these very problems (an upper bound; it picks
    on the evaluation set)."""
    out = []
    for n in budgets:
        correct = total = 0
        for lv in level_list:
            best = max(((cells.get((label, n, lv), (0, 0))) for label in labels), key=lambda ct: (ct[0] / ct[1]) if ct[1] else -1, default=(0, 0))
            correct += best[0]
            total += best[1]
        if total:
            out.append((n, correct / total))
    return out


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _summary_table(summary: dict[str, list[SummaryRow]]) -> Table:
    rows = []
    for label, srows in summary.items():
        for r in srows:
            rows.append([label, str(r.n), _fmt(r.accuracy), f"[{r.ci_low:.3f}, {r.ci_high:.3f}]", _fmt(r.pass_at_n), f"{r.mean_generated_tokens:.0f}", f"{r.mean_compute_tokens:.0f}", f"{r.mean_wall_time:.2f}", str(r.num_rows)])
    return Table(["strategy", "N", "accuracy", "95% CI", "pass@N", "gen tokens", "gen+scored tokens", "wall s", "rows"], rows, caption=f"Accuracy per strategy and budget (Wilson 95% intervals; means per problem). {PASS_AT_N_NOTE}")


def _meta_table(runs: list[RunData]) -> Table:
    rows = []
    for run in runs:
        ident = run.meta.get("identity", {})
        v = run.meta.get("versions", {})
        m = run.meta.get("machine", {})
        seeds = sorted({r.get("seed", 0) for r in run.rows})
        problems = len({r["problem_id"] for r in run.rows})
        strategies = ", ".join(dict.fromkeys(r["strategy"] for r in run.rows))
        rows.append(
            [
                str(run.path),
                f"{ident.get('task', '?')} / {ident.get('split', '?')}",
                str(problems),
                str(ident.get("model", "?")),
                str(ident.get("scorer", "?")),
                strategies,
                ",".join(map(str, seeds)),
                f"max_tokens={ident.get('max_tokens')} T={ident.get('temperature')} top_p={ident.get('top_p')}" + (f" policy={ident['policy']}" if ident.get("policy") else ""),
                " ".join(f"{k} {val}" for k, val in v.items()),
                f"{m.get('processor', '?')}, {m.get('cpus', '?')} CPUs" + (f", {m['gpu']}" if m.get("gpu") else "") + f", {m.get('platform', '?')}",
                str(run.meta.get("started", "?")),
            ]
        )
    return Table(["run", "task / split", "problems", "model", "scorer", "strategies", "seeds", "sampling", "versions", "machine", "started"], rows, caption="Run metadata (from each run's run.json).")


def _policy_table(policy: Policy) -> Table:
    rows = []
    for e in sorted(policy.entries, key=lambda e: (e.n, e.level)):
        params = ",".join(f"{k}={v}" for k, v in sorted(e.params.items()))
        rows.append([str(e.level), str(e.n), e.strategy, params or "-", _fmt(e.accuracy), f"[{e.ci_low:.3f}, {e.ci_high:.3f}]", str(e.num_problems), str(e.run_n)])
    cap = (
        f"Learned policy ({policy.task}/{policy.split}, bins: {policy.bins}, probe: {policy.num_probe} samples, "
        f"reduction {policy.reduction}, edges {', '.join(f'{x:.3f}' for x in policy.edges)}, "
        f"levels ranked by accuracy shrunk towards the pooled one with {policy.prior_strength:g} pseudo-problems"
        + (f"; no probe at N={', '.join(map(str, policy.probe_free_budgets))}, where one strategy with the whole budget did as well on dev" if policy.probe_free_budgets else "")
        + (f"; the probe's answers {'join' if policy.probe_joins else 'stay out of'} a search's final choice (dev {policy.probe_join_accuracy['joined']:.3f} joined, {policy.probe_join_accuracy['apart']:.3f} apart)" if policy.probe_join_accuracy else "")
        + ")."
    )
    return Table(["level", "N", "strategy", "params", "dev accuracy", "95% CI", "dev problems", "measured at N"], rows, caption=cap)


def build_report(
    run_dirs: list[str | Path],
    out: str | Path,
    *,
    reference: Reference | None = None,
    difficulty: Difficulty | None = None,
    policy: Policy | None = None,
    title: str | None = None,
) -> tuple[Path, Path]:
    """Write `out` (.html, self-contained) and its Markdown twin (.md, plots in `<stem>_files/`); return both
    paths."""
    if not run_dirs:
        raise DataError("give at least one run directory.")
    runs = [load_run(d) for d in run_dirs]
    series, strategy_of = _series(runs)
    labels = list(series)
    sampled = {label for label in labels if samples_independently(strategy_of[label])}  # pass@n over all samples
    summary = {label: summarize(rows, [label], sampled=sampled) for label, rows in series.items()}
    idents = [r.meta.get("identity", {}) for r in runs]
    tasks = sorted({f"{i.get('task', '?')}/{i.get('split', '?')}" for i in idents})
    models = sorted({str(i.get("model", "?")) for i in idents})
    title = title or f"testtime report: {', '.join(tasks)} - model {', '.join(models)}"
    levels = _levels(series, difficulty)
    level_list = sorted(set(levels.values()))
    cells = _by_level(series, levels)
    all_budgets = sorted({r.n for rows in summary.values() for r in rows})
    multi = [label for label in labels if len(summary[label]) > 1]  # strategies with a budget axis
    optimal = next((label for label in labels if label.split(" ")[0] == "optimal"), None)

    blocks: list = []
    num_problems = len({r["problem_id"] for rows in series.values() for r in rows})
    blocks.append(Text(f"{len(runs)} run(s), {num_problems} problems, strategies: {', '.join(labels)}. Accuracy is exact-match of the chosen answer against the gold answer; intervals are 95% Wilson score intervals. Levels: {'oracle levels from the difficulty file where known, else ' if difficulty else ''}the task's levels."))

    blocks.append(Heading("Accuracy vs budget"))
    blocks.append(Image("accuracy_vs_n.png", _plot_curves(summary, "n", "budget N (candidates per problem, log2)", "Accuracy vs budget", reference, highlight=optimal), "Accuracy vs budget N (log2) for every strategy, 95% bands."))
    blocks.append(Image("accuracy_vs_compute.png", _plot_curves(summary, "mean_compute_tokens", "compute per problem (generated + scored tokens, log)", "Accuracy vs measured compute", reference, highlight=optimal), "Accuracy vs measured compute (generated + scored tokens per problem)."))
    blocks.append(_summary_table(summary))

    if level_list:
        bar_budgets = [n for n in all_budgets if n > 1][-_MAX_BAR_PANELS:] or all_budgets
        blocks.append(Heading("Accuracy by difficulty level and budget"))
        blocks.append(Image("accuracy_by_level.png", _plot_levels(cells, labels, bar_budgets, level_list), "Accuracy by difficulty level (1 easiest) for each budget; error bars are 95% intervals."))
        trows = []
        for lv in level_list:
            for label in labels:
                cells_lv = [cells.get((label, n, lv), (0, 0)) for n in bar_budgets]
                if any(t for _, t in cells_lv):
                    trows.append([str(lv), label, str(max(t for _, t in cells_lv))] + [f"{c / t:.3f} [{wilson_interval(c, t)[0]:.2f}, {wilson_interval(c, t)[1]:.2f}]" if t else "-" for c, t in cells_lv])
        blocks.append(Table(["level", "strategy", "rows"] + [f"N={n}" for n in bar_budgets], trows, caption="Accuracy by level, with 95% intervals."))

    if len(multi) >= 2 or optimal or reference:
        blocks.append(Heading("Compute-optimal scaling"))
        curve_labels = [label for label in labels if label != optimal]  # also single-budget runs: they face optimal at their N
        hind = _hindsight(cells, curve_labels, all_budgets, level_list) if level_list and len(curve_labels) >= 2 else None
        blocks.append(Image("compute_optimal.png", _plot_curves(summary, "n", "budget N (log2)", "Compute-optimal vs single strategies", reference, highlight=optimal, hindsight=hind), "The compute-optimal strategy (bold, when run) next to every single strategy; dashed: each level's best strategy chosen on these same problems (an upper bound)."))
        crow = []
        for n in all_budgets:
            singles = [(r.accuracy, label) for label in curve_labels for r in summary[label] if r.n == n]
            best = max(singles, key=lambda t: (t[0], -labels.index(t[1])), default=None)
            opt = next((r for r in summary.get(optimal, []) if r.n == n), None) if optimal else None
            h = dict(hind or []).get(n)
            crow.append([str(n), f"{best[1]} {best[0]:.3f}" if best else "-", f"{opt.accuracy:.3f} [{opt.ci_low:.3f}, {opt.ci_high:.3f}]" if opt else "-", _fmt(h)])
        blocks.append(Table(["N", "best single strategy", "optimal (95% CI)", "per-level best (hindsight)"], crow, caption="Compute-optimal vs the best single strategy at each budget." + (f" Reference: {reference.label} = {reference.accuracy:.3f}." if reference else "")))

    if policy is not None:
        blocks.append(Heading("Learned policy"))
        blocks.append(_policy_table(policy))

    blocks.append(Heading("Runs"))
    blocks.append(_meta_table(runs))

    out = Path(out)
    if out.suffix != ".html":
        out = out / "report.html" if out.suffix == "" else out.with_suffix(".html")
    out.parent.mkdir(parents=True, exist_ok=True)
    image_dir = out.stem + "_files"
    (out.parent / image_dir).mkdir(exist_ok=True)
    for b in blocks:
        if isinstance(b, Image):
            (out.parent / image_dir / b.name).write_bytes(b.png)
    out.write_text(render_html(title, blocks))
    md = out.with_suffix(".md")
    md.write_text(render_markdown(title, blocks, image_dir))
    return out, md
