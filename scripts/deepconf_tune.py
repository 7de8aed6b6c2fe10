"""Choose online DeepConf's settings on a dev run by replaying them on its stored traces (no generation).

Every combination of the grid is replayed at each budget (`testtime.eval.replay.simulate_online`, checked equal
to the live strategy in tests/test_replay.py) and compared with majority at the same budget on the same
problems. Prints, per combination, accuracy and tokens at each budget against majority's; the ones that keep
majority's accuracy at every budget, cheapest first. Run it on a dev split, then run the chosen settings live on
test:

    python scripts/deepconf_tune.py runs/dc-arith-dev --n 16,64
"""

from __future__ import annotations

import argparse
import itertools

from testtime.eval.replay import load_stored, replay_rules
from testtime.strategies import DeepConfOnlineParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="an eval run whose majority candidates carry traces")
    ap.add_argument("--n", default="16,64", help="budgets (default: %(default)s)")
    ap.add_argument("--metric", default="lowest-group,bottom10-group,mean,tail,logprob", help="metrics (default: %(default)s)")
    ap.add_argument("--window", default="16,32,64", help="windows (default: %(default)s)")
    ap.add_argument("--keep", default="0.1,0.25,0.5,0.75,0.9", help="keep fractions (default: %(default)s)")
    ap.add_argument("--warmup", default="0.125,0.25,0.375", help="warm-up as a fraction of n (default: %(default)s)")
    ap.add_argument("--consensus", default="0.9,0.95,1.0", help="consensus shares (default: %(default)s)")
    ap.add_argument("--top", type=int, default=25, help="rows to print (default: %(default)s)")
    args = ap.parse_args()

    problems = load_stored(args.run)
    ns = [int(x) for x in args.n.split(",")]
    grid = itertools.product(args.metric.split(","), [int(w) for w in args.window.split(",")], [float(k) for k in args.keep.split(",")], [float(f) for f in args.warmup.split(",")], [float(c) for c in args.consensus.split(",")])
    results = []
    for metric, window, keep, frac, consensus in grid:
        per_n = []
        for n in ns:
            warm = max(2, round(frac * n))
            params = DeepConfOnlineParams(metric=metric, window=window, keep=keep, warmup=warm, consensus=consensus)
            maj, row = replay_rules(problems, [n], {"majority": None, "online": params})
            per_n.append((n, maj, row))
        ok = all(row.accuracy >= maj.accuracy for _, maj, row in per_n)
        cost = max(row.tokens_vs_majority for _, _, row in per_n)
        results.append((not ok, cost, f"{metric}:window={window}:keep={keep:g}:warmup={frac:g}n:consensus={consensus:g}", per_n))
    results.sort(key=lambda r: (r[0], r[1]))
    print(f"{len(results)} settings replayed on {len(problems)} problems of {args.run}; keeps majority's accuracy at every n first, then fewest tokens:")
    for bad, cost, name, per_n in results[: args.top]:
        cells = "  ".join(f"n={n}: {row.accuracy:.3f} vs {maj.accuracy:.3f}, {row.tokens_vs_majority:.2f}x (+{row.only_rule}/-{row.only_majority})" for n, maj, row in per_n)
        print(f"{'  ' if not bad else '! '}{name:<64} {cells}")


if __name__ == "__main__":
    main()
