"""Learn a compute-optimal policy from stored dev runs: for each (difficulty level, budget N), the strategy and
hyper-parameters with the best dev accuracy (Snell et al. 2024, sec. 3.2, "compute-optimal scaling strategy").

Candidates and how each is measured from the run's rows:
- independent-sampling strategies (majority, bon, weighted): their selection rule is re-applied to the first
  N stored candidates, so any N up to the run's largest is free, and scored ones are tried with every score
  reduction (last, min, prod, mean) from the stored per-step scores; online they reuse the probe samples, so
  the dev number at N is exactly what they will face;
- any other strategy (a search): its stored result at the largest budget <= N - num_probe, the budget it will
  have left online after the probe, plus the probe's cost; with no such budget stored it is not a candidate at
  N. Online the probe's finished answers join the search's candidates for the final choice; where the run
  stored that budget's candidates (runs written since searches keep every budget's), the same re-selection is
  made here over the stored search candidates and the scored sampling run's first num_probe samples, which are
  exactly the probe online (same seed). Whether the probe's answers join at all is itself chosen on dev
  (`Policy.probe_joins`: the searches' dev accuracy over the probed budgets, joined vs apart). Rows of other
  runs at other budgets can join (`merge_rows`), e.g. a search run at N - num_probe.

A level's choice ranks variants by their level accuracy shrunk towards their accuracy over all levels at that N
(empirical Bayes with `prior_strength` pseudo-problems): with a handful of dev problems per level, a one-problem
lead is noise and the pooled winner should stand; with many, the level's own evidence decides. Ties break
towards the better strategy over all levels at that N, then fewer compute tokens, then the order given in
`strategies`.

The probe itself has a price (num_probe of the N samples, and their scoring), so each budget is also tried
without one: the single best variant with the whole budget for every level. Whichever way answers more dev
problems leave-one-problem-out wins the budget; a tie goes to no probe (cheaper, and nothing to mispredict).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .._errors import DataError, check
from ..scorers import REDUCTIONS, reduce_scores
from ..strategies import DEFAULT_SAMPLING, STRATEGIES, Candidate, Usage, get_strategy
from ..strategies.optimal import OptimalStrategy, Policy, PolicyEntry, build_strategy, is_resampling, reselect_with_probe
from ._identity import differing_setting
from ._metrics import wilson_interval
from ._results import ResultsFile, drop_duplicates
from .difficulty import Difficulty

__all__ = ["AUTO", "DEFAULT_PRIOR_STRENGTH", "POOLED", "PRIOR_GRID", "SKIP_PROBE", "Outcome", "choose_prior_strength", "candidate_variants", "extra_run_rows", "merge_rows", "measure_variants", "learn_policy", "format_policy"]


AUTO = "auto"
DEFAULT_PRIOR_STRENGTH: float | str = AUTO
"""Pseudo-problems of pooled evidence each level's accuracy is shrunk with (at 8 with 8 problems per level, the
level's own accuracy and the pooled one weigh the same); "auto" picks it from `PRIOR_GRID` by leave-one-
problem-out accuracy on dev."""
POOLED = 1e6
"""A prior strength that makes every level take the pooled winner (no per-level choice)."""
PRIOR_GRID = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, POOLED)
"""Prior strengths "auto" tries."""
SKIP_PROBE = (AUTO, "never")
"""`skip_probe` values: "auto" drops the probe at budgets where it does not pay for itself on dev."""


def shrunk_accuracy(successes: float, count: int, pooled: float, prior_strength: float) -> float:
    """(successes + m * pooled) / (count + m): a level's accuracy pulled towards the pooled one by m
    pseudo-problems (the posterior mean under a Beta prior centred on the pooled accuracy)."""
    if count + prior_strength <= 0:
        return pooled
    return (successes + prior_strength * pooled) / (count + prior_strength)


@dataclass
class Outcome:
    """One variant on one (problem, seed) at one budget."""

    correct: bool
    compute_tokens: float
    run_n: int


def candidate_variants(strategies: list[str]) -> list[tuple[str, dict]]:
    """(strategy, params) pairs to compare: scored sampling strategies once per reduction."""
    out = []
    for name in strategies:
        cls = get_strategy(name)
        check(cls is not OptimalStrategy, "`optimal` cannot be a candidate of its own policy.", parameter="strategies", value=name)
        if is_resampling(cls) and cls.needs_scorer:
            out += [(name, {"reduction": r}) for r in REDUCTIONS]
        else:
            out.append((name, {}))
    return out


class _Offline:
    """Stands in for the scorer when a selection rule is re-applied to stored candidates."""


def _candidates(stored: list[dict], reduction: str | None) -> list[Candidate]:
    return [
        Candidate(
            index=i,
            text=c.get("text", ""),
            num_tokens=c.get("num_tokens", 0),
            answer=c.get("answer"),
            finish_reason=c.get("finish_reason"),
            scores=list(c.get("scores") or []),
            score=reduce_scores(c.get("scores") or [], reduction) if reduction else c.get("score"),
        )
        for i, c in enumerate(stored)
    ]


def merge_rows(rows: list[dict]) -> list[dict]:
    """Rows of several runs on the same problems as one run's, in first-seen order. A search's row gains the
    budgets another run stored for the same (problem, strategy, seed), each with its candidates (the first run
    wins a budget both stored); for an independent-sampling strategy the row with the most candidates stands,
    since its smaller budgets are re-selected from them."""
    out: dict[tuple[str, str, int], dict] = {}
    for r in rows:
        key = (r["problem_id"], r["strategy"], r.get("seed", 0))
        cls = STRATEGIES.get(r["strategy"])
        if cls is not None and is_resampling(cls):
            if key not in out or len(r.get("candidates") or []) > len(out[key].get("candidates") or []):
                out[key] = r
            continue
        largest = max((int(n) for n in r["by_n"]), default=0)
        by_n = {n: at if "candidates" in at or int(n) != largest else {**at, "candidates": r.get("candidates")} for n, at in r["by_n"].items()}
        out[key] = {**r, "by_n": by_n} if key not in out else {**out[key], "by_n": {**by_n, **out[key]["by_n"]}}
    return list(out.values())


SAME_EXPERIMENT = ("task", "split", "data", "levels", "model", "scorer", "max_tokens", "temperature", "top_p", "task_options")
"""Run settings an extra run must share with the dev run for its rows to join (budgets, strategies, limit,
seeds and chunking may differ)."""


def extra_run_rows(dirs: list[str], config, *, strategies: list[str]) -> list[dict]:
    """The rows of `strategies` in other stored runs of the same experiment as `config` (an `EvalConfig`), for
    `merge_rows`. A directory that is not a run, or ran other settings, is a `DataError` naming the first
    setting that differs."""
    want = json.loads(json.dumps(config.identity()))  # as stored in run.json
    rows: list[dict] = []
    for d in dirs:
        meta = Path(d) / "run.json"
        try:
            have = json.loads(meta.read_text()).get("identity", {})
        except FileNotFoundError:
            raise DataError(f"--extra-runs: {d} is not an eval run directory (no run.json).") from None
        except (OSError, ValueError, AttributeError) as exc:
            raise DataError(f"--extra-runs: {meta} is not readable ({exc}).") from None
        k = differing_setting(have, want, keys=SAME_EXPERIMENT)
        if k is not None:
            raise DataError(f"--extra-runs: {d} ran other settings than the dev run ({k}: {have.get(k)!r} there, {want.get(k)!r} here); only runs of the same task, split, model, scorer and sampling can join.")
        rows += [r for r in drop_duplicates(ResultsFile(Path(d) / "results.jsonl").load())[0] if r.get("strategy") in strategies]
    return rows


def _probes(rows: list[dict], num_probe: int) -> dict[tuple[str, int], tuple[list[dict], float]]:
    """(problem_id, seed) -> (the probe's stored candidates, their compute tokens): the first `num_probe`
    samples of that seed's scored sampling row, which is what `optimal` samples as its probe."""
    out: dict[tuple[str, int], tuple[list[dict], float]] = {}
    for r in rows:
        cls = STRATEGIES.get(r["strategy"])
        if cls is None or not is_resampling(cls) or not cls.needs_scorer or len(r.get("candidates") or []) < num_probe:
            continue
        stored = r["candidates"]
        chars = [len(c.get("text", "")) for c in stored]
        tokens = sum(c.get("num_tokens", 0) for c in stored[:num_probe]) + Usage.from_dict(r["usage"]).scored_tokens_of_first(chars, num_probe)
        out.setdefault((r["problem_id"], r.get("seed", 0)), (stored[:num_probe], tokens))
    return out


def _search_outcome(at: dict, run_n: int, params, probe: tuple[list[dict], float] | None, joins: bool) -> Outcome:
    """A search's outcome at stored budget `run_n`, with the probe's cost and, if the probe `joins` and `at`
    kept its candidates, the probe's finished answers in the final choice as online (`reselect_with_probe`)."""
    if probe is None:
        return Outcome(bool(at["correct"]), at["num_compute_tokens"], run_n)
    stored_probe, tokens = probe
    correct = bool(at["correct"])
    if joins and at.get("candidates") is not None:
        merged = reselect_with_probe(params, _candidates(at["candidates"], None), _candidates(stored_probe, None))
        if merged is not None:
            stored = at["candidates"] + [c for c in stored_probe if c.get("finish_reason") is not None]  # as merged
            correct = merged[1] is not None and bool(stored[merged[1]].get("correct"))
    return Outcome(correct, at["num_compute_tokens"] + tokens, run_n)


def measure_variants(rows: list[dict], variants: list[tuple[str, dict]], budgets: list[int], *, num_probe: int, probe_joins: bool = True) -> dict[tuple[str, str], dict[int, dict[tuple[str, int], Outcome]]]:
    """(strategy, params json) -> N -> (problem_id, seed) -> Outcome, for every N the variant can be measured at.
    `rows` as `merge_rows` leaves them (one run's rows already are); `probe_joins`: whether the probe's answers
    join a search's final choice (`Policy.probe_joins`)."""
    rows = merge_rows(rows)
    probes = _probes(rows, num_probe) if num_probe else {}
    by_strategy: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_strategy[r["strategy"]].append(r)
    out: dict[tuple[str, str], dict[int, dict[tuple[str, int], Outcome]]] = {}
    for name, params in variants:
        key = (name, json.dumps(params, sort_keys=True))
        out[key] = {}
        cls = get_strategy(name)
        if is_resampling(cls):
            strat = build_strategy(name, None, _Offline(), params, sampling=DEFAULT_SAMPLING, seed=0)
            reduction = (params.get("reduction") or "last") if cls.needs_scorer else None
            for r in by_strategy[name]:
                stored = r["candidates"]
                cands = _candidates(stored, reduction)
                chars = [len(c.get("text", "")) for c in stored]
                for n in budgets:
                    if n > len(stored):
                        continue
                    sel = strat.select(cands[:n])
                    correct = sel is not None and bool(stored[sel].get("correct"))
                    gen = sum(c.get("num_tokens", 0) for c in stored[:n])
                    scored = Usage.from_dict(r["usage"]).scored_tokens_of_first(chars, n) if cls.needs_scorer else 0
                    out[key].setdefault(n, {})[(r["problem_id"], r.get("seed", 0))] = Outcome(correct, gen + scored, n)
        else:
            search_params = cls.params_class(**params)
            for r in by_strategy[name]:
                stored_ns = sorted(int(x) for x in r["by_n"])
                pair = (r["problem_id"], r.get("seed", 0))
                for n in budgets:
                    fits = [m for m in stored_ns if m <= n - num_probe]
                    if not fits:
                        continue
                    out[key].setdefault(n, {})[pair] = _search_outcome(r["by_n"][str(fits[-1])], fits[-1], search_params, probes.get(pair), probe_joins)
    return out


def _searches(variants: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The variants that are searches (measured per stored budget, not re-selected from samples)."""
    return [v for v in variants if not is_resampling(get_strategy(v[0]))]


def _probe_join(rows: list[dict], searches: list[tuple[str, dict]], budgets: list[int], num_probe: int):
    """(the searches measured after a probe the better way on dev, whether that is with the probe's answers
    joining their final choice, {"joined": acc, "apart": acc}). A tie keeps them apart: nothing is lost."""
    ways = {joins: measure_variants(rows, searches, budgets, num_probe=num_probe, probe_joins=joins) for joins in (True, False)}
    outs = {joins: [o for per_n in m.values() for per in per_n.values() for o in per.values()] for joins, m in ways.items()}
    if not outs[True]:
        return ways[False], False, {}
    acc = {"joined": _stats(outs[True])[0], "apart": _stats(outs[False])[0]}
    joins = acc["joined"] > acc["apart"]
    return ways[joins], joins, acc


def _without_probe(measured, rows: list[dict], variants: list[tuple[str, dict]], budgets: list[int]):
    """`measured` as it is with no probe: searches re-measured with all of N; sampling strategies reused (their
    numbers never depended on the probe, and re-selecting every stored candidate set is the costly part)."""
    return {**measured, **measure_variants(rows, _searches(variants), budgets, num_probe=0)}


def _stats(outcomes: list[Outcome]) -> tuple[float, float, int]:
    if not outcomes:
        return 0.0, 0.0, 0
    acc = sum(o.correct for o in outcomes) / len(outcomes)
    return acc, sum(o.compute_tokens for o in outcomes) / len(outcomes), outcomes[0].run_n


def learn_policy(
    rows: list[dict],
    difficulty: Difficulty,
    *,
    strategies: list[str],
    budgets: list[int],
    bins: str = "predicted",
    task: str = "",
    split: str = "",
    model: str = "",
    scorer: str = "",
    sampling: dict | None = None,
    sources: list[str] | None = None,
    prior_strength: float | str = DEFAULT_PRIOR_STRENGTH,
    skip_probe: str = AUTO,
) -> Policy:
    """The policy: for each level 1..num_levels and each budget, the best variant on that level's dev problems
    (by accuracy shrunk towards the pooled one; `prior_strength` 0 ranks by the level's accuracy alone, "auto"
    cross-validates it on dev).

    With `skip_probe` "auto", a budget becomes probe-free when the best single variant given the whole budget
    (searches measured at the largest stored budget <= N, not N - num_probe) answers at least as many dev
    problems leave-one-problem-out as probing and choosing by level does; every level then gets that variant.
    "never" keeps the probe at every budget."""
    check(prior_strength == AUTO or (isinstance(prior_strength, (int, float)) and prior_strength >= 0), f"`prior_strength` must be a number >= 0 or 'auto', got {prior_strength!r}.", parameter="prior_strength", value=prior_strength)
    check(skip_probe in SKIP_PROBE, f"`skip_probe` must be one of {', '.join(SKIP_PROBE)}, got {skip_probe!r}.", parameter="skip_probe", value=skip_probe)
    check(bins in ("predicted", "oracle"), f"`bins` must be 'predicted' or 'oracle', got {bins!r}.", parameter="bins", value=bins)
    if not difficulty.predicted_edges:
        raise DataError("the difficulty has no predicted scores (the run stored none): include a scored sampling strategy (weighted or bon) in --strategies.")
    levels = difficulty.levels(bins)
    variants = candidate_variants(strategies)
    searches = _searches(variants)
    measured = measure_variants(rows, [v for v in variants if v not in searches], budgets, num_probe=difficulty.num_probe)
    searched, probe_joins, join_accuracy = _probe_join(rows, searches, budgets, difficulty.num_probe)
    measured.update(searched)
    whole = _without_probe(measured, rows, variants, budgets)
    order = {key: i for i, key in enumerate((n, json.dumps(p, sort_keys=True)) for n, p in variants)}
    cv: dict[float, float] = {}
    if prior_strength == AUTO:
        prior_strength, cv = choose_prior_strength(measured, levels, order, sorted(budgets))
    one_level = dict.fromkeys(levels, 0)  # leave-one-out of the pooled choice: every problem on one level
    entries, probe_free, budget_cv = [], [], {}
    for n in sorted(budgets):
        by_level = _cv_accuracy(_cv_counts(measured, levels, order, n, (prior_strength,))[prior_strength])
        free = _cv_accuracy(_cv_counts(whole, one_level, order, n, (0.0,))[0.0])
        budget_cv[str(n)] = {"by_level": by_level, "probe_free": free}
        is_free = skip_probe == AUTO and (free >= by_level or not any(measured[k].get(n) for k in order))
        source = whole if is_free else measured
        feasible = [k for k in order if source[k].get(n)]
        if not feasible:
            raise DataError(f"no strategy can be measured at N={n}: sampling runs need >= {n} candidates, searches a stored budget <= N - {difficulty.num_probe}.")
        if is_free:
            probe_free.append(n)
        for level in range(1, difficulty.num_levels + 1):
            src, pooled = _level_stats(source, levels, feasible, n, level)
            if is_free:  # one variant for every level: ranked by pooled accuracy alone, so ties cannot split levels
                ranked = sorted(feasible, key=lambda k: (-pooled[k][0], pooled[k][1], order[k]))
                rank = {k: pooled[k][0] for k in feasible}
            else:
                ranked, rank = _ranked(src, pooled, order, prior_strength)
            best = ranked[0]
            acc, compute, run_n, count = src[best]
            successes = round(acc * count)
            lo, hi = wilson_interval(successes, count) if count else (0.0, 0.0)
            entries.append(
                PolicyEntry(
                    level=level,
                    n=n,
                    strategy=best[0],
                    params=json.loads(best[1]),
                    accuracy=acc,
                    num_problems=count,
                    ci_low=lo,
                    ci_high=hi,
                    mean_compute_tokens=compute,
                    run_n=run_n,
                    ranking=[
                        {"strategy": k[0], "params": json.loads(k[1]), "accuracy": src[k][0], "shrunk_accuracy": rank[k], "pooled_accuracy": pooled[k][0], "mean_compute_tokens": src[k][1], "run_n": src[k][2]}
                        for k in ranked
                    ],
                )
            )
    return Policy(
        entries=entries,
        edges=list(difficulty.predicted_edges),
        num_levels=difficulty.num_levels,
        num_probe=difficulty.num_probe,
        reduction=difficulty.reduction,
        bins=bins,
        task=task,
        split=split,
        model=model,
        scorer=scorer,
        sampling=sampling or {},
        sources=sources or [],
        prior_strength=float(prior_strength),
        prior_strength_cv={f"{m:g}": acc for m, acc in cv.items()},
        probe_free_budgets=probe_free,
        budget_cv=budget_cv,
        probe_joins=probe_joins,
        probe_join_accuracy=join_accuracy,
    )


def _level_stats(measured, levels: dict[str, int], feasible: list, n: int, level: int, exclude: str | None = None):
    """(level stats, pooled stats) of each variant at N, problem `exclude` left out (for cross-validation);
    stats are (accuracy, mean compute, run_n, count). A level with no problems gets the pooled numbers."""
    pooled, stats = {}, {}
    for k in feasible:
        outs = [(pid, o) for (pid, _seed), o in measured[k][n].items() if pid != exclude]
        pooled[k] = _stats([o for _, o in outs])
        mine = [o for pid, o in outs if levels.get(pid) == level]
        stats[k] = (*_stats(mine), len(mine))
    src = {k: (*pooled[k], 0) for k in feasible} if all(s[3] == 0 for s in stats.values()) else stats
    return src, pooled


def _ranked(src: dict, pooled: dict, order: dict, prior_strength: float) -> tuple[list, dict]:
    """Variants best first by level accuracy shrunk towards the pooled one, and the shrunk accuracies."""
    rank = {k: shrunk_accuracy(src[k][0] * src[k][3], src[k][3], pooled[k][0], prior_strength) for k in src}
    return sorted(src, key=lambda k: (-rank[k], -pooled[k][0], src[k][1], order[k])), rank


def _cv_counts(measured, levels: dict[str, int], order: dict, n: int, grid: tuple[float, ...]) -> dict[float, tuple[int, int]]:
    """Leave-one-problem-out at budget N: each dev problem answered by the variant the other problems choose for
    its level, per prior strength in `grid`. Returns {prior: (right, total)} over (problem, seed) pairs."""
    pids = sorted({pid for outs in (per_n.get(n, {}) for per_n in measured.values()) for (pid, _s) in outs})
    feasible = [k for k in order if measured[k].get(n)]
    counts = dict.fromkeys(grid, (0, 0))
    for pid in pids:
        if pid not in levels:
            continue
        src, pooled = _level_stats(measured, levels, feasible, n, levels[pid], exclude=pid)  # the same for every prior
        for m in grid:
            best = _ranked(src, pooled, order, m)[0][0]
            outs = [o for (p, _s), o in measured[best][n].items() if p == pid]  # one per seed
            right, total = counts[m]
            counts[m] = (right + sum(o.correct for o in outs), total + len(outs))
    return counts


def choose_prior_strength(measured, levels: dict[str, int], order: dict, budgets: list[int], grid: tuple[float, ...] = PRIOR_GRID) -> tuple[float, dict[float, float]]:
    """The prior strength with the best leave-one-problem-out dev accuracy over all budgets: each dev problem
    is answered by the variant the other problems choose for its level. Ties go to the stronger prior (the
    simpler policy). Returns (choice, {prior: cross-validated accuracy})."""
    right, total = dict.fromkeys(grid, 0), dict.fromkeys(grid, 0)
    for n in budgets:
        for m, (r, t) in _cv_counts(measured, levels, order, n, grid).items():
            right[m] += r
            total[m] += t
    cv = {m: right[m] / total[m] if total[m] else 0.0 for m in grid}
    return max(grid, key=lambda m: (cv[m], m)), cv


def _cv_accuracy(counts: tuple[int, int]) -> float:
    return counts[0] / counts[1] if counts[1] else 0.0


def _label(strategy: str, params: dict) -> str:
    return strategy + (f"[{','.join(f'{k}={v}' for k, v in sorted(params.items()))}]" if params else "")


def in_sample_accuracy(policy: Policy, rows: list[dict], difficulty: Difficulty) -> dict[int, tuple[float, dict[str, float]]]:
    """N -> (dev accuracy of the policy's choices on the dev problems it was learned on, best single variant's
    accuracy per strategy name). In-sample, so optimistic: the test split is the honest comparison."""
    levels = difficulty.levels(policy.bins)
    variants = [(r["strategy"], r["params"]) for e in policy.entries for r in e.ranking]
    uniq = list(dict.fromkeys((s, json.dumps(p, sort_keys=True)) for s, p in variants))
    chosen_variants = [(s, json.loads(p)) for s, p in uniq]
    probed = measure_variants(rows, chosen_variants, policy.budgets, num_probe=policy.num_probe, probe_joins=policy.probe_joins)
    whole = _without_probe(probed, rows, chosen_variants, policy.budgets)
    out = {}
    for n in policy.budgets:
        measured = whole if n in policy.probe_free_budgets else probed
        chosen = []
        for level in range(1, policy.num_levels + 1):
            e = policy.entry(level, n)
            k = (e.strategy, json.dumps(e.params, sort_keys=True))
            chosen += [o for (pid, _s), o in measured[k].get(n, {}).items() if levels.get(pid) == level]
        singles: dict[str, float] = {}
        for k, per_n in measured.items():
            if per_n.get(n):
                singles[k[0]] = max(singles.get(k[0], 0.0), _stats(list(per_n[n].values()))[0])
        out[n] = (_stats(chosen)[0], singles)
    return out


def format_policy(policy: Policy) -> str:
    """A level x budget table of the choices with their dev accuracy and problem count."""
    budgets = policy.budgets
    width = max([len(_label(e.strategy, e.params)) for e in policy.entries] + [10]) + 16
    heads = [f"N={n}" + (" (no probe)" if n in policy.probe_free_budgets else "") for n in budgets]
    lines = [f"{'level':>5}  " + "".join(f"{h:<{width}}" for h in heads), "-" * (7 + width * len(budgets))]
    for level in range(1, policy.num_levels + 1):
        cells = []
        for n in budgets:
            e = policy.entry(level, n)
            cells.append(f"{_label(e.strategy, e.params)} {e.accuracy:.2f} ({e.num_problems})")
        lines.append(f"{level:>5}  " + "".join(f"{c:<{width}}" for c in cells))
    return "\n".join(lines)
