"""Particle filtering under a PRM (Puri et al. 2025, "A Probabilistic Inference Approach to Inference-Time
Scaling of LLMs using Particle-Based Monte Carlo Methods", sec. 3).

n particles per problem. After each step every live particle is scored; its weight is a softmax, at
`softmax_temperature`, of the logit of its reduced PRM score (w_i ∝ exp(logit(r_i) / T), i.e. the odds
r / (1 - r) raised to 1/T). When the effective sample size ESS = 1 / Σ w_i² falls below `ess_threshold` times
the number of live particles, the live population is resampled (multinomial or systematic), so likely paths
are duplicated and unlikely ones dropped; otherwise it continues unchanged.

Finished particles are absorbing: they leave the live population with their score, are never expanded or
resampled again, and keep their own slot, so n = live + finished at every step. Resampling draws only the live
slots from the live particles: finished particles can never be copied into the population and crowd the live
ones out. The answer is picked from the finished particles (`select`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .._errors import check
from ..tasks import Problem
from ._base import problem_seed
from ._step_search import SearchState, StepRow, StepSearch, StepSearchParams, logit

__all__ = ["ParticleFilter", "ParticleFilterParams", "RESAMPLERS", "resample_multinomial", "resample_systematic", "effective_sample_size", "particle_weights"]


def particle_weights(scores: list[float], temperature: float) -> list[float]:
    """Normalized weights softmax(logit(score) / temperature)."""
    z = [logit(s) / temperature for s in scores]
    top = max(z)
    e = [math.exp(v - top) for v in z]
    total = sum(e)
    return [v / total for v in e]


def effective_sample_size(weights: list[float]) -> float:
    """1 / Σ w² of normalized weights: n for uniform weights, 1 when one particle has all the mass."""
    return 1.0 / sum(w * w for w in weights)


def resample_multinomial(weights: list[float], k: int, rng: random.Random) -> list[int]:
    """k independent draws from the categorical distribution `weights`, sorted."""
    return sorted(rng.choices(range(len(weights)), weights=weights, k=k))


def resample_systematic(weights: list[float], k: int, rng: random.Random) -> list[int]:
    """Systematic resampling: one uniform u in [0, 1/k), then the k points u + j/k on the cumulative weights.
    Particle i is copied floor or ceil of k·w_i times (lower variance than multinomial)."""
    u = rng.random() / k
    out, cum, i = [], weights[0], 0
    for j in range(k):
        point = u + j / k
        while point > cum and i < len(weights) - 1:
            i += 1
            cum += weights[i]
        out.append(i)
    return out


RESAMPLERS = {"multinomial": resample_multinomial, "systematic": resample_systematic}


@dataclass
class ParticleFilterParams(StepSearchParams):
    """Knobs of particle filtering (plus the shared ones of `StepSearchParams`)."""

    softmax_temperature: float = 1.0
    """T > 0 in w ∝ exp(logit(score) / T): lower concentrates the resampling on the best particles."""
    resampling: str = "multinomial"
    """"multinomial" (the paper's) or "systematic"."""
    ess_threshold: float = 1.0
    """Resample when ESS < threshold × live particles; in [0, 1]. 1 resamples at every step (the paper's
    setting), 0 never (n independent samples that are only scored)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.softmax_temperature > 0, f"`softmax_temperature` must be > 0, got {self.softmax_temperature!r}.", parameter="softmax_temperature", value=self.softmax_temperature)
        check(self.resampling in RESAMPLERS, f"`resampling` must be one of {', '.join(RESAMPLERS)}, got {self.resampling!r}.", parameter="resampling", value=self.resampling)
        check(0.0 <= self.ess_threshold <= 1.0, f"`ess_threshold` must be in [0, 1], got {self.ess_threshold!r}.", parameter="ess_threshold", value=self.ess_threshold)


@dataclass
class ParticleState(SearchState):
    num_resamples: int = 0


class ParticleFilter(StepSearch):
    name = "pf"
    params_class = ParticleFilterParams

    def new_state(self, problem: Problem, n: int) -> ParticleState:
        # The resampling stream is the problem's own: results do not depend on the batch it ran in.
        return ParticleState(problem=problem, n=n, rng=random.Random(problem_seed(self.seed, "pf:" + problem.id)))

    def update(self, state: ParticleState, rows: list[StepRow], final: bool) -> list[int]:
        for r in rows:
            if r.finished:
                state.complete(r)  # absorbing: leaves the live population with its score
        live = [i for i, r in enumerate(rows) if not r.finished]
        if not live:
            return []
        w = particle_weights([rows[i].score for i in live], self.params.softmax_temperature)
        thr = self.params.ess_threshold
        if thr >= 1.0 or effective_sample_size(w) < thr * len(live):
            state.num_resamples += 1
            picks = RESAMPLERS[self.params.resampling](w, len(live), state.rng)
            return [live[j] for j in picks]
        return live
