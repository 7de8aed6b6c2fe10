"""Compute-optimal test-time scaling (Snell et al. 2024, sec. 3.2 and 5): per problem, estimate its difficulty
from a few scored samples, then run the strategy that did best at that difficulty and budget on a dev split.

The `Policy` (written by `testtime optimize`) maps (difficulty level, budget N) to a strategy and its
hyper-parameters. Online, `OptimalStrategy`:

1. samples `num_probe` candidates per problem and scores them (the probe);
2. predicts the level from the mean reduced score, with bin edges learned on dev (no gold answer needed);
3. dispatches to the policy's strategy for (level, N). The probe counts towards N: an independent-sampling
   strategy (majority, bon, weighted) reuses the probe candidates and samples only N - num_probe more, so its
   N candidates are distributed exactly as in the dev run the policy was learned on; any other strategy
   (a search) runs with the N - num_probe that is left, and, where dev said it helps (`Policy.probe_joins`),
   the probe's finished answers join its completed candidates for the final choice (scored as the search
   scores, chosen by its `select` rule).

At a budget the policy marks probe-free (`Policy.probe_free_budgets`: on dev, one strategy for every level,
given the whole budget, did at least as well as choosing by level after a probe), there is no probe: the choice
runs with all N, exactly as it ran on dev, since a difficulty estimate that changes nothing is wasted compute.

Budgets between the policy's use the entry of the largest policy budget <= N (the smallest, below them).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from .._errors import DataError, ValidationError, check
from ..engines import Engine, SamplingParams
from ..scorers import REDUCTIONS, Scorer, reduce_scores
from ..tasks import Problem
from ._base import (
    DEFAULT_SAMPLING,
    SamplingStrategy,
    SamplingStrategyParams,
    Strategy,
    as_problem_list,
    check_n,
)
from ._spec import strategy_params
from ._types import Candidate, SolveResult

__all__ = ["OptimalStrategy", "OptimalParams", "Policy", "PolicyEntry", "POLICY_VERSION", "DEFAULT_NUM_PROBE", "is_resampling", "level_from_edges", "reselect_with_probe"]

POLICY_VERSION = 1
DEFAULT_NUM_PROBE = 4
"""Probe samples per problem: Snell et al. use many more (2048) for their oracle bins; 4 keeps the probe a
small share of N=16 while its mean score still separates easy from hard problems."""
DEFAULT_NUM_LEVELS = 5
_REST_SEED = 0x5EED  # the samples after the probe get their own seed stream, never repeating the probe's


def level_from_edges(value: float, edges: Sequence[float]) -> int:
    """Level 1 (easiest) .. len(edges) + 1 of a difficulty value where higher means easier (a pass rate, a
    mean score). `edges` are ascending cut points; a value equal to an edge goes to the easier level."""
    return len(edges) + 1 - bisect.bisect_right(list(edges), value)


@dataclass
class PolicyEntry:
    """The choice for one (level, budget) and the dev evidence behind it."""

    level: int = 1
    n: int = 1
    """The budget N this entry is for."""
    strategy: str = "majority"
    params: dict = field(default_factory=dict)
    """Keyword fields of the strategy's params class (e.g. {"reduction": "min"}); empty means its defaults."""
    accuracy: float = 0.0
    """Dev accuracy of the choice on this level at this budget."""
    num_problems: int = 0
    """Dev problems (x seeds) on this level; 0 means the level was empty on dev and the choice is the best
    strategy over all levels."""
    ci_low: float = 0.0
    ci_high: float = 0.0
    mean_compute_tokens: float = 0.0
    run_n: int = 0
    """The stored budget the dev accuracy was measured at: N for sampling strategies (the probe is reused),
    the largest stored budget <= N - num_probe for searches (<= N at a probe-free budget)."""
    ranking: list[dict] = field(default_factory=list)
    """Every feasible candidate, best first: {"strategy", "params", "accuracy" (on this level),
    "shrunk_accuracy" (what it was ranked by), "pooled_accuracy" (over all levels), "mean_compute_tokens",
    "run_n"}."""


@dataclass
class Policy:
    """Which strategy to run for each (difficulty level, budget); JSON on disk (`save` / `load`)."""

    entries: list[PolicyEntry] = field(default_factory=list)
    edges: list[float] = field(default_factory=list)
    """Ascending cut points of the predicted difficulty (mean probe score), learned on dev; level 1 is the
    highest scores. len(edges) == num_levels - 1."""
    num_levels: int = DEFAULT_NUM_LEVELS
    num_probe: int = DEFAULT_NUM_PROBE
    """Probe samples per problem whose mean reduced score predicts the level."""
    reduction: str = "last"
    """How a probe candidate's step scores reduce to one number ("last", "min", "prod", "mean")."""
    bins: str = "predicted"
    """Levels the dev choices were grouped by: "predicted" (as online) or "oracle" (pass@1 from the gold)."""
    task: str = ""
    split: str = ""
    model: str = ""
    scorer: str = ""
    sampling: dict = field(default_factory=dict)
    """temperature / top_p / max_tokens of the dev runs."""
    sources: list[str] = field(default_factory=list)
    """Run directories the dev numbers come from."""
    prior_strength: float = 0.0
    """Pseudo-problems of pooled evidence each level's dev accuracy was shrunk with when ranking (0: none)."""
    prior_strength_cv: dict[str, float] = field(default_factory=dict)
    """With `--prior-strength auto`: each tried prior strength's leave-one-problem-out dev accuracy."""
    probe_free_budgets: list[int] = field(default_factory=list)
    """Policy budgets at which `optimal` runs no probe: every level has the same choice, measured on dev with the
    whole budget. Empty: always probe (a policy learned with `--skip-probe never`, or one where choosing by level
    always paid for its probe)."""
    budget_cv: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per budget N (as a string), the leave-one-problem-out dev accuracy of the two ways to spend it:
    {"by_level": probe, then each level's choice; "probe_free": one choice for all, whole budget}."""
    probe_joins: bool = True
    """Whether a search dispatched after the probe makes its final choice over the probe's finished answers too.
    `optimize` sets it from dev (`probe_join_accuracy`): extra candidates help a vote, but can hurt a best-score
    choice whose scorer over-rates some wrong answers. Files written before it existed always joined."""
    probe_join_accuracy: dict[str, float] = field(default_factory=dict)
    """Dev accuracy of the searches over every probed budget, {"joined": ..., "apart": ...}; empty when no
    search was measured after a probe."""
    version: int = POLICY_VERSION

    def __post_init__(self) -> None:
        check(isinstance(self.num_probe, int) and self.num_probe >= 1, f"`num_probe` must be an integer >= 1, got {self.num_probe!r}.", parameter="num_probe", value=self.num_probe)
        check(self.reduction in REDUCTIONS, f"`reduction` must be one of {', '.join(REDUCTIONS)}, got {self.reduction!r}.", parameter="reduction", value=self.reduction)
        check(len(self.edges) == self.num_levels - 1, f"a policy with {self.num_levels} levels needs {self.num_levels - 1} edges, got {len(self.edges)}.", parameter="edges", value=self.edges)
        check(list(self.edges) == sorted(self.edges), f"policy edges must be ascending, got {self.edges}.", parameter="edges", value=self.edges)
        self.entries = [e if isinstance(e, PolicyEntry) else PolicyEntry(**e) for e in self.entries]
        missing = sorted(set(self.probe_free_budgets) - set(self.budgets))
        check(not missing, f"`probe_free_budgets` names budgets with no entries: {missing}.", parameter="probe_free_budgets", value=self.probe_free_budgets)

    @property
    def budgets(self) -> list[int]:
        return sorted({e.n for e in self.entries})

    def level_of(self, score: float) -> int:
        """The predicted level of a problem whose probe candidates have mean reduced score `score`."""
        return level_from_edges(score, self.edges)

    def budget_for(self, n: int) -> int:
        """The policy budget whose entries serve budget n: the largest <= n (the smallest if n is below them all)."""
        budgets = self.budgets
        if not budgets:
            raise DataError("the policy has no entries; rerun `testtime optimize`.")
        below = [b for b in budgets if b <= n]
        return below[-1] if below else budgets[0]

    def is_probe_free(self, n: int) -> bool:
        """Whether `optimal` skips the probe at budget n (see `probe_free_budgets`)."""
        return self.budget_for(n) in self.probe_free_budgets

    def entry(self, level: int, n: int) -> PolicyEntry:
        """The choice for `level` at budget n: the entry of the largest policy budget <= n (the smallest if n
        is below them all)."""
        b = self.budget_for(n)
        for e in self.entries:
            if e.level == level and e.n == b:
                return e
        raise DataError(f"the policy has no entry for level {level} at N={b}; rerun `testtime optimize`.")

    def to_dict(self) -> dict:
        return {"version": self.version, **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "version"}, "entries": [asdict(e) for e in self.entries]}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Read a policy file; names its path and the problem when it is not one."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"policy file {path} does not exist; write one with `testtime optimize`.") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"policy file {path} is not readable JSON ({exc}).") from None
        if not isinstance(data, dict) or data.get("version") != POLICY_VERSION:
            raise DataError(f"{path} is not a version-{POLICY_VERSION} policy file (write one with `testtime optimize`).")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValidationError) as exc:
            raise DataError(f"policy file {path} is malformed: {exc}") from None


def build_strategy(name: str, engine: Engine, scorer: Scorer | None, params: dict, *, n: int | str | None = None, sampling: SamplingParams, seed: int, policy=None) -> Strategy:
    """An instance of a registered strategy with `params` as the keyword fields of its params class, at budget
    `n` (None: the params' own `n`; a strategy with a `fixed_budget`, greedy, runs at that whatever is asked, a
    budget-free baseline). The scorer goes only to strategies that rank, `policy` only to those that take one
    (`needs_policy`), so every caller builds every strategy the same way."""
    from . import get_strategy  # the registry imports this module

    cls = get_strategy(name)
    kwargs = {"policy": policy} if cls.needs_policy else {}
    return cls(engine, scorer if cls.needs_scorer else None, params=strategy_params(cls, name, params, n), sampling=sampling, seed=seed, **kwargs)


def reselect_with_probe(params, candidates: Sequence[Candidate], probe: Sequence[Candidate]) -> tuple[list[Candidate], int | None] | None:
    """A search's completed `candidates` with the probe's finished ones added (scored with the search's
    reduction) and the index its `select` rule picks over both; None for a search without a `select` rule,
    which keeps its own choice. One function for `optimal` online and for `optimize` measuring it on dev."""
    from ._step_search import SELECTIONS

    select = SELECTIONS.get(getattr(params, "select", ""))
    if select is None:
        return None
    finished = [c for c in probe if c.finish_reason is not None]
    cands = list(candidates) + [replace(c, index=len(candidates) + i, score=reduce_scores(c.scores, params.reduction)) for i, c in enumerate(finished)]
    return cands, select(cands)


def is_resampling(cls: type) -> bool:
    """Whether a strategy's result at budget N is a selection over N independent samples (so probe samples can
    stand in for its first ones)."""
    return issubclass(cls, SamplingStrategy) and cls.fixed_budget is None


@dataclass
class OptimalParams:
    """Knobs of the compute-optimal strategy (the policy file holds the rest)."""

    n: int | None = None
    """The budget N per problem, probe included, >= 1; None: the policy's largest budget."""

    def __post_init__(self) -> None:
        if self.n is not None:
            check_n(self.n)


class OptimalStrategy(Strategy):
    """Probe, predict the difficulty level, dispatch to the policy's strategy for (level, budget).

    After `solve`, `choices` holds one dict per problem (problem_id, n, score, level, strategy, params, budget
    the chosen strategy got) for inspection and tests; score and level are None at a probe-free budget.
    """

    name = "optimal"
    params_class = OptimalParams
    needs_scorer = True
    needs_policy = True

    def __init__(
        self,
        engine: Engine,
        scorer: Scorer | None = None,
        *,
        params: OptimalParams | None = None,
        policy: Policy | str | Path | None = None,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        seed: int = 0,
    ) -> None:
        super().__init__(engine, scorer, params=params, sampling=sampling, seed=seed)
        if policy is None:
            raise ValidationError("strategy 'optimal' needs a policy (--policy FILE), written by `testtime optimize`.", parameter="policy")
        self.policy = policy if isinstance(policy, Policy) else Policy.load(policy)
        from . import get_strategy

        for e in self.policy.entries:  # fail now, not mid-run, on a strategy this install lacks
            for r in e.ranking or [{"strategy": e.strategy}]:
                get_strategy(r["strategy"])
        self.choices: list[dict] = []

    def _probe(self, problems: list[Problem], k: int) -> list[SolveResult]:
        prober = SamplingStrategy(self.engine, self.scorer, params=SamplingStrategyParams(n=k, reduction=self.policy.reduction), sampling=self.sampling, seed=self.seed)
        prober.use_tqdm = self.use_tqdm
        return prober.sample(problems, scorer=self.scorer)

    def _feasible(self, entry: PolicyEntry, remaining: int) -> tuple[str, dict]:
        """The best choice that fits: a search needs at least one unit of budget after the probe."""
        from . import get_strategy

        for r in entry.ranking or [{"strategy": entry.strategy, "params": entry.params}]:
            if remaining >= 1 or is_resampling(get_strategy(r["strategy"])):
                return r["strategy"], r.get("params") or {}
        return "majority", {}  # every choice was a search and the probe took the whole budget

    def _resample(self, name: str, params: dict, probs: list[Problem], probe: list[SolveResult], n: int) -> list[SolveResult]:
        strat = build_strategy(name, self.engine, self.scorer, params, n=n, sampling=self.sampling, seed=self.seed + _REST_SEED)
        strat.use_tqdm = self.use_tqdm
        k = len(probe[0].candidates)
        more = strat.at_budget(n - k).sample(probs, scorer=self.scorer if strat.needs_scorer else None) if n > k else [SolveResult() for _ in probs]
        out = []
        for pr, mr in zip(probe, more, strict=True):
            cands = [replace(c) for c in pr.candidates]
            if strat.needs_scorer:  # the probe was reduced with the policy's reduction; rank with the strategy's
                for c in cands:
                    c.score = reduce_scores(c.scores, strat.params.reduction)
            cands += [replace(c, index=k + i) for i, c in enumerate(mr.candidates)]
            res = strat.choose(replace(pr, candidates=cands))
            out.append(replace(res, strategy=self.name, usage=pr.usage + mr.usage))
        return out

    def _build(self, name: str, params: dict, n: int) -> Strategy:
        strat = build_strategy(name, self.engine, self.scorer, params, n=n, sampling=self.sampling, seed=self.seed)
        strat.use_tqdm = self.use_tqdm
        return strat

    def _solve_search(self, name: str, params: dict, probs: list[Problem], budget: int) -> tuple[Strategy, list[SolveResult], int]:
        """(strategy, results, budget used). Some searches take only certain budgets (a multiple of the beam
        width); fall back to the largest power of two that fits, the budgets optimize measures them at."""

        def run(n: int) -> tuple[Strategy, list[SolveResult], int]:
            strat = self._build(name, params, n)
            return strat, strat.solve(probs), n

        try:
            return run(budget)
        except ValidationError:
            return run(1 << (budget.bit_length() - 1))

    def _search(self, name: str, params: dict, probs: list[Problem], probe: list[SolveResult], budget: int) -> tuple[list[SolveResult], int]:
        strat, results, budget = self._solve_search(name, params, probs, budget)
        return [self._with_probe(strat, r, pr) for pr, r in zip(probe, results, strict=True)], budget

    def _with_probe(self, strat: Strategy, result: SolveResult, probe: SolveResult) -> SolveResult:
        """A search's result with the probe's cost, and (if the policy says the probe joins) the probe's
        finished answers added to its candidates and the final choice made again over both (a search without a
        `select` rule keeps its own choice)."""
        usage = probe.usage + result.usage
        merged = reselect_with_probe(strat.params, result.candidates, probe.candidates) if self.policy.probe_joins else None
        if merged is None:
            return replace(result, strategy=self.name, usage=usage)
        cands, sel = merged
        return replace(result, strategy=self.name, candidates=cands, selected=sel, answer=None if sel is None else cands[sel].answer, usage=usage)

    def _solve_probe_free(self, probs: list[Problem], n: int) -> list[SolveResult]:
        """Every level has the same choice at this budget: run it with the whole budget and the strategy's own
        seed, as the single-strategy dev run that chose it did."""
        e = self.policy.entry(1, n)
        from . import get_strategy

        if is_resampling(get_strategy(e.strategy)):
            results, got = self._build(e.strategy, e.params, n).solve(probs), n
        else:
            _, results, got = self._solve_search(e.strategy, e.params, probs, n)
        self.choices = [{"problem_id": p.id, "n": n, "score": None, "level": None, "strategy": e.strategy, "params": e.params, "budget": got} for p in probs]
        return [replace(r, strategy=self.name) for r in results]

    def absorb(self, program_copy: Strategy) -> None:
        self.choices = self.choices + program_copy.choices

    @property
    def budget(self) -> int:
        """The budget N it runs at: `params.n`, or the policy's largest budget."""
        return self.params.n if self.params.n is not None else max(self.policy.budgets)

    def rows_needed(self) -> int:
        return self.budget

    def solve_batch(self, problems: Problem | Sequence[Problem]) -> list[SolveResult]:
        probs = as_problem_list(problems)
        n = self.budget
        if not probs:
            return []
        if self.policy.is_probe_free(n):
            return self._solve_probe_free(probs, n)
        k = min(self.policy.num_probe, n)
        probe = self._probe(probs, k)
        groups: dict[tuple[str, str], list[int]] = {}
        info = []
        for i, r in enumerate(probe):
            score = sum(reduce_scores(c.scores, self.policy.reduction) for c in r.candidates) / max(len(r.candidates), 1)
            level = self.policy.level_of(score)
            name, params = self._feasible(self.policy.entry(level, n), n - k)
            info.append({"problem_id": probs[i].id, "n": n, "score": score, "level": level, "strategy": name, "params": params})
            groups.setdefault((name, json.dumps(params, sort_keys=True)), []).append(i)
        from . import get_strategy

        results: list[SolveResult | None] = [None] * len(probs)
        for (name, pjson), idx in groups.items():  # groups in order of first problem: deterministic
            params = json.loads(pjson)
            sub_probs, sub_probe = [probs[i] for i in idx], [probe[i] for i in idx]
            if is_resampling(get_strategy(name)):
                sub, got = self._resample(name, params, sub_probs, sub_probe, n), n
            else:
                sub, got = self._search(name, params, sub_probs, sub_probe, n - k)
            for i, r in zip(idx, sub, strict=True):
                results[i] = r
                info[i]["budget"] = got
        self.choices = info
        return results  # type: ignore[return-value]
