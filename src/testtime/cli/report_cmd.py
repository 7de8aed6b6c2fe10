"""`testtime report RUN_DIR...`: one self-contained HTML page with every plot and table, and a Markdown twin."""

from __future__ import annotations

HELP = "write a self-contained HTML report (and a Markdown twin) from eval run directories"


def add_arguments(p) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="eval run directories (the --out of `testtime eval`)")
    p.add_argument("--out", default="runs/report.html", help="HTML file to write; the .md twin and a <name>_files/ folder of PNGs go beside it (default: %(default)s)")
    p.add_argument("--difficulty", default=None, help="difficulty JSON (`testtime difficulty`) whose oracle levels group the problems (default: the task's levels)")
    p.add_argument("--policy", default=None, help="policy JSON (`testtime optimize`) to show as a table (default: none)")
    p.add_argument("--reference", default=None, help="run directory of a larger model's greedy eval, drawn as a reference line (default: none)")
    p.add_argument("--reference-accuracy", type=float, default=None, help="a reference accuracy to draw instead of --reference, in [0, 1] (default: none)")
    p.add_argument("--reference-label", default="larger model, greedy", help="label of --reference-accuracy (default: %(default)s)")
    p.add_argument("--title", default=None, help="page title (default: from the runs' task and model)")


def run(args) -> int:
    from .._errors import check
    from ..eval.difficulty import Difficulty
    from ..eval.report import Reference, build_report, reference_from_run
    from ..strategies.optimal import Policy

    reference = None
    if args.reference:
        reference = reference_from_run(args.reference)
    elif args.reference_accuracy is not None:
        check(0.0 <= args.reference_accuracy <= 1.0, f"--reference-accuracy must be in [0, 1], got {args.reference_accuracy}.", parameter="reference_accuracy", value=args.reference_accuracy)
        reference = Reference(args.reference_accuracy, args.reference_label)
    html, md = build_report(
        args.run_dirs,
        args.out,
        reference=reference,
        difficulty=Difficulty.load(args.difficulty) if args.difficulty else None,
        policy=Policy.load(args.policy) if args.policy else None,
        title=args.title,
    )
    print(f"report: {html} (markdown: {md})")
    return 0
