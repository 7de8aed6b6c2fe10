"""`testtime export RUN_DIR... --format sft|dpo|prm --out FILE`: eval runs as training data (JSONL)."""

from __future__ import annotations

import argparse

from ._common import names

HELP = "export eval runs' candidates as training data: sft (messages), dpo (prompt/chosen/rejected) or prm (step labels) JSONL"


def add_arguments(p) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="eval run directories (the --out of `testtime eval`)")
    # Checked in run(), not by argparse `choices`, so a bad format is one `error:` line like every other bad value.
    p.add_argument("--format", required=True, help="sft, dpo or prm (required)")
    p.add_argument("--out", required=True, help="JSONL file to write, atomically; not inside an input run (required)")
    p.add_argument("--strategy", type=names, default=None, help="only rows of these strategies, e.g. bon,beam (default: all)")
    p.add_argument("--correct-only", action="store_true", help="sft/prm: keep only candidates graded correct (needs gold answers) (default: off)")
    p.add_argument("--chosen", action="store_true", help="sft/prm: keep only the candidate the strategy picked (default: off)")
    p.add_argument("--top-k", type=int, default=0, help="sft/prm: keep the K highest-rewarded candidates per problem; 0 disables (default: %(default)s)")
    p.add_argument("--dedupe", action=argparse.BooleanOptionalAction, default=True, help="one record per distinct text of a problem (default: on)")
    p.add_argument("--max-per-problem", type=int, default=0, help="at most K records (dpo: pairs) per problem; 0: no limit (default: %(default)s)")


def run(args) -> int:
    from ..eval.export import ExportRules, export_records, write_jsonl_atomic

    rules = ExportRules(correct_only=args.correct_only, chosen_only=args.chosen, dedupe=args.dedupe, top_k=args.top_k, max_per_problem=args.max_per_problem)
    result = export_records(args.run_dirs, args.format, rules, strategies=args.strategy)
    path = write_jsonl_atomic(result.records, args.out, inputs=args.run_dirs)
    print(f"wrote {len(result.records)} {args.format} records from {result.num_problems_used} of {result.num_problems} problems to {path}")
    return 0
