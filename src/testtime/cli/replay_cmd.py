"""`testtime replay`: confidence calibration and early-stopping rules replayed on a stored run (no generation)."""

from __future__ import annotations

import os
from pathlib import Path

from ._common import ints, names

HELP = "replay confidence rules on a stored eval run: AUC of every confidence metric, and what deepconf, deepconf-online and adaptive would answer and spend at each budget"

DEFAULT_RULES = ["majority", "deepconf", "deepconf:keep=0.9", "deepconf-online", "deepconf-online:keep=0.9", "adaptive"]


def add_arguments(p) -> None:
    p.add_argument("run", help="an eval run directory whose candidates carry traces (sampled with logprobs, e.g. by deepconf)")
    p.add_argument("--source", default="majority", help="the strategy whose stored samples are replayed (default: %(default)s)")
    p.add_argument("--rules", type=names, default=DEFAULT_RULES, help=f"strategy specs to replay, comma-separated: majority, deepconf, deepconf-online, adaptive, with :KEY=VALUE overrides (default: {','.join(DEFAULT_RULES)})")
    p.add_argument("--n", type=ints("--n"), default=None, help="budgets, comma-separated, at most the stored samples per problem (default: 16 and the stored number)")
    p.add_argument("--seed", type=int, default=None, help="the stored seed to replay (default: the first in the run)")
    p.add_argument("--out", default=None, help="where replay.json goes (default: the run directory)")


def run(args) -> int:
    from .._errors import ValidationError
    from ..eval.replay import calibration, compare_stored, format_replay, load_stored, replay_rules, write_replay
    from ..strategies import (
        AdaptiveConsistency,
        DeepConf,
        DeepConfOnline,
        MajorityVote,
        get_strategy,
        parse_strategy_spec,
    )
    from ..strategies._spec import params_for

    problems = load_stored(args.run, strategy=args.source, seed=args.seed)
    stored = min(len(p.candidates) for p in problems)
    ns = args.n or sorted({min(16, stored), stored})
    if any(n < 1 or n > stored for n in ns):
        raise ValidationError(f"--n must be budgets in [1, {stored}] (the run stores {stored} samples per problem), got {ns}.", parameter="n", value=ns)
    rules = {}
    for spec in args.rules:
        name, overrides = parse_strategy_spec(spec)
        cls = get_strategy(name)
        if cls is MajorityVote:
            rules[spec] = None
        elif cls in (DeepConf, DeepConfOnline, AdaptiveConsistency):
            rules[spec] = params_for(cls, name, overrides)
        else:
            raise ValidationError(f"replay runs majority, deepconf, deepconf-online and adaptive, not {name!r}.", parameter="rules", value=spec)
    calib = calibration(problems)
    rows = replay_rules(problems, ns, rules)
    print(format_replay(rows, calib))
    live = compare_stored(args.run, baseline=args.source)
    print(f"\nStrategies the run ran (live), against {args.source} at the same n on the same problems:\n")
    print(format_replay(live))
    out = args.out or args.run
    write_replay(Path(out), rows, calib, live)
    print(f"replay: {os.path.join(out, 'replay.json')}")
    return 0
