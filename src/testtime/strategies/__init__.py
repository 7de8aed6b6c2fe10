"""Test-time strategies, one file each, all with `solve(problems) -> list[SolveResult]` at the budget `params.n`
(`strategy.at_budget(n)`: the same strategy at another budget)."""

from __future__ import annotations

from .._errors import UnknownNameError
from ._base import DEFAULT_SAMPLING, SamplingStrategy, SamplingStrategyParams, Strategy, problem_seed
from ._select import best_of_n, majority_vote, weighted_vote
from ._spec import parse_strategy_spec
from ._step_search import StepSearch, StepSearchParams
from ._types import Candidate, SolveResult, Usage
from .adaptive import AdaptiveConsistency, AdaptiveParams
from .beam_search import BeamSearch, BeamSearchParams
from .best_of_n import BestOfN
from .deepconf import DeepConf, DeepConfParams
from .deepconf_online import DeepConfOnline, DeepConfOnlineParams
from .dvts import DVTS, DVTSParams
from .greedy import Greedy, GreedyParams
from .majority import MajorityVote
from .optimal import OptimalParams, OptimalStrategy, Policy, PolicyEntry, build_strategy
from .particle_filter import ParticleFilter, ParticleFilterParams
from .speculative_rejection import SpeculativeRejection, SpeculativeRejectionParams
from .weighted import WeightedBestOfN

__all__ = [
    "AdaptiveConsistency",
    "AdaptiveParams",
    "DEFAULT_SAMPLING",
    "DVTS",
    "STRATEGIES",
    "BeamSearch",
    "BeamSearchParams",
    "BestOfN",
    "Candidate",
    "DVTSParams",
    "DeepConf",
    "DeepConfOnline",
    "DeepConfOnlineParams",
    "DeepConfParams",
    "Greedy",
    "GreedyParams",
    "MajorityVote",
    "ParticleFilter",
    "ParticleFilterParams",
    "OptimalParams",
    "OptimalStrategy",
    "Policy",
    "PolicyEntry",
    "SamplingStrategy",
    "SamplingStrategyParams",
    "SolveResult",
    "SpeculativeRejection",
    "SpeculativeRejectionParams",
    "StepSearch",
    "StepSearchParams",
    "Strategy",
    "Usage",
    "WeightedBestOfN",
    "best_of_n",
    "build_strategy",
    "get_strategy",
    "make_strategy",
    "parse_strategy_spec",
    "majority_vote",
    "problem_seed",
    "weighted_vote",
]

STRATEGIES: dict[str, type[Strategy]] = {
    "greedy": Greedy,
    "majority": MajorityVote,
    "bon": BestOfN,
    "weighted": WeightedBestOfN,
    "spr": SpeculativeRejection,
    "optimal": OptimalStrategy,
    "beam": BeamSearch,
    "dvts": DVTS,
    "pf": ParticleFilter,
    "deepconf": DeepConf,
    "deepconf-online": DeepConfOnline,
    "adaptive": AdaptiveConsistency,
}
"""Strategy name -> class."""


def get_strategy(name: str) -> type[Strategy]:
    """The class of a registered strategy; a spec (`deepconf:keep=0.9`) gives its base strategy's class."""
    base = parse_strategy_spec(name)[0] if ":" in name else name
    if base not in STRATEGIES:
        raise UnknownNameError("strategy", base, STRATEGIES)
    return STRATEGIES[base]


def make_strategy(spec: str, engine, scorer=None, *, n: int | str | None = None, sampling=DEFAULT_SAMPLING, seed: int = 0, policy=None) -> Strategy:
    """An instance from a name or a spec `NAME[:KEY=VALUE]...` (the keys: fields of its params class, `n`
    among them), at budget `n` if given (once: in the spec or as `n`; a strategy with a `fixed_budget`, greedy,
    runs at that whatever is asked). With overrides in the spec, the instance's `name` is the whole spec, so
    its eval rows are told apart from the default's. `scorer` goes to the strategies that rank and `policy` to
    those that take one (`needs_policy`); the others ignore them, so callers build every strategy the same way."""
    name, params = parse_strategy_spec(spec)
    strategy = build_strategy(name, engine, scorer, params, n=n, sampling=sampling, seed=seed, policy=policy)
    if params:
        strategy.name = spec.strip()
    return strategy
