"""`testtime bon-curve RUN_DIR`: BOND's analytic best-of-N reward and win-rate curves, next to the run's points."""

from __future__ import annotations

HELP = "analytic best-of-N curves (expected max reward, win rate, accuracy for every N up to the samples drawn) of a scored sampling run, plotted with the measured points"


def add_arguments(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="an eval run directory with a scored sampling strategy (bon, weighted)")
    p.add_argument("--strategy", default=None, help="whose rows to read (default: the first sampling strategy with rewards)")
    p.add_argument("--out", default=None, help="PNG to write; a .json of the numbers goes beside it (default: RUN_DIR/bon_curve.png)")


def run(args) -> int:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from ..eval._plot import plot_bon_curve
    from ..eval.bon_curve import bon_curve
    from ..eval.report import load_run

    data = load_run(args.run_dir)
    curve = bon_curve(data.rows, strategy=args.strategy)
    out = Path(args.out) if args.out else Path(args.run_dir) / "bon_curve.png"
    title = f"best-of-N over the samples of {curve.strategy}, {curve.num_rows} rows ({args.run_dir})"
    plot_bon_curve(curve, out, title=title)
    out.with_suffix(".json").write_text(json.dumps(asdict(curve), indent=2) + "\n")
    print(f"{'N':>4} {'E[max r]':>9} {'win':>6} {'acc':>6}   measured: {'r':>6} {'win':>6} {'acc':>6}")
    for i, n in enumerate(curve.ns):
        if n & (n - 1) and n != curve.ns[-1] and n not in curve.measured:
            continue  # powers of two, the run's budgets and the last N keep the table short
        acc = f"{curve.accuracy[i]:6.3f}" if curve.accuracy is not None else f"{'-':>6}"
        line = f"{n:>4} {curve.reward[i]:9.4f} {curve.win_rate[i]:6.3f} {acc}"
        if n in curve.measured:
            r, w, a = curve.measured[n]
            line += f"             {r:6.4f} {w:6.3f} " + (f"{a:6.3f}" if a is not None else f"{'-':>6}")
        print(line)
    print(f"plot: {out}; numbers: {out.with_suffix('.json')}")
    return 0
