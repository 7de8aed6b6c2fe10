"""PNG plots of a run: accuracy against the budget N (log2 axis) and against measured compute."""

from __future__ import annotations

from pathlib import Path

from ._metrics import SummaryRow, samples_independently

__all__ = ["plot_accuracy", "plot_bon_curve", "plot_loss"]


def plot_accuracy(summary: list[SummaryRow], out_dir: Path, *, title: str = "") -> list[Path]:
    """Write accuracy_vs_n.png and accuracy_vs_compute.png; return their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    strategies = list(dict.fromkeys(r.strategy for r in summary))
    paths = []
    for x_key, xlabel, fname in [
        ("n", "budget N (candidates per problem)", "accuracy_vs_n.png"),
        ("mean_compute_tokens", "compute per problem (generated + scored tokens)", "accuracy_vs_compute.png"),
    ]:
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        for s in strategies:
            rows = [r for r in summary if r.strategy == s]
            xs = [getattr(r, x_key) for r in rows]
            ys = [r.accuracy for r in rows]
            if len(rows) == 1 and x_key == "n":  # budget-free baselines (greedy) as a reference line
                ax.axhline(ys[0], linestyle=":", color="gray", label=f"{s} ({ys[0]:.2f})")
                continue
            line = ax.plot(xs, ys, marker="o", label=s)[0]
            ax.fill_between(xs, [r.ci_low for r in rows], [r.ci_high for r in rows], alpha=0.15, color=line.get_color())
        pass_rows = {}
        for r in sorted(summary, key=lambda r: not samples_independently(r.strategy)):  # samples' pass@N first
            if r.pass_at_n is not None and r.n > 1:
                pass_rows.setdefault(r.n, r)
        if x_key == "n" and pass_rows:
            ns = sorted(pass_rows)
            ax.plot(ns, [pass_rows[n].pass_at_n for n in ns], linestyle="--", color="black", alpha=0.6, label="pass@N (oracle)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        if title:
            ax.set_title(title, fontsize=10)
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths



def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, *, title: str = "") -> Path:
    """Title, lay out, write and close a figure: open figures are never garbage-collected by pyplot."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def plot_bon_curve(curve, path: Path, *, title: str = "") -> Path:
    """Write the analytic best-of-N curves of a `bon_curve.BonCurve` (lines) with the run's measured points
    (markers) to `path`: expected max reward, win rate against a base sample, and accuracy when there is gold."""
    panels = [("E[max reward of N]", curve.reward), ("win rate vs a base sample", curve.win_rate)]
    if curve.accuracy is not None:
        panels.append(("accuracy of the best-rewarded", curve.accuracy))
    fig, axes = _pyplot().subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), dpi=120)
    measured = sorted(curve.measured)
    for k, (ax, (ylabel, ys)) in enumerate(zip(axes, panels, strict=True)):
        ax.plot(curve.ns, ys, label="analytic (empirical CDF)")
        # measured[n] is (reward, win rate, accuracy), the panels' order
        ax.plot(measured, [curve.measured[n][k] for n in measured], "o", label="measured (first n samples)")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="N", ylabel=ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path, title=title)


def plot_loss(losses: list[tuple[int, float]], path: Path, *, title: str = "") -> Path:
    """The training loss curve, (step, loss) pairs, as a PNG at `path` (`testtime finetune` writes it)."""
    fig, ax = _pyplot().subplots(figsize=(6, 4), dpi=120)
    ax.plot([s for s, _ in losses], [v for _, v in losses], marker="." if len(losses) < 50 else None)
    ax.set(xlabel="optimizer step", ylabel="training loss (completion tokens)")
    ax.grid(True, alpha=0.3)
    return _save(fig, path, title=title)
