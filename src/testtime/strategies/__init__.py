"""Test-time strategies, one file each, all with `solve(problems, budget=None) -> list[SolveResult]`."""

from __future__ import annotations

from .._errors import UnknownNameError
from ._base import DEFAULT_SAMPLING, SamplingStrategy, SamplingStrategyParams, Strategy, problem_seed
from ._select import best_of_n, majority_vote, weighted_vote
from ._step_search import StepSearch, StepSearchParams
from ._types import Candidate, SolveResult, Usage
from .adaptive import AdaptiveConsistency, AdaptiveParams
from .beam_search import BeamSearch, BeamSearchParams
from .best_of_n import BestOfN
from .deepconf import DeepConf, DeepConfParams
from .deepconf_online import DeepConfOnline, DeepConfOnlineParams
from .dvts import DVTS, DVTSParams
from .greedy import Greedy
from .majority import MajorityVote
from .optimal import OptimalStrategy, Policy, PolicyEntry
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
    "MajorityVote",
    "ParticleFilter",
    "ParticleFilterParams",
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
    "get_strategy",
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
    if name not in STRATEGIES:
        raise UnknownNameError("strategy", name, STRATEGIES)
    return STRATEGIES[name]
