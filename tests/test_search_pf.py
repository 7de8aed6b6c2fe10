"""Particle filtering: weights, ESS, both resamplers, and the search step by step on a scripted engine and
scorer, including finished particles that are absorbing and never crowd live ones out."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import pytest

from testtime import ValidationError
from testtime.engines import ScriptedEngine
from testtime.scorers import ScriptedScorer
from testtime.strategies import ParticleFilter, ParticleFilterParams, get_strategy
from testtime.strategies.particle_filter import (
    effective_sample_size,
    particle_weights,
    resample_multinomial,
    resample_systematic,
)
from testtime.tasks import Problem

P = Problem(id="p1", question="q1", answer="7")


class Plan:
    """Sampled step k (numbered in row order) writes texts.get(k, f"s{k}"); steps in `final` end the solution."""

    def __init__(self, texts=None, final=()):
        self.texts, self.final = texts or {}, set(final)
        self.k = itertools.count()

    def __call__(self, request, params, index):
        k = next(self.k)
        text = self.texts.get(k, f"s{k}")
        return text if k in self.final else text + "\n\nmore"


def by_step(scores: dict[str, float], default: float = 0.5) -> ScriptedScorer:
    return ScriptedScorer(lambda q, steps: [scores.get(s, default) for s in steps])


def texts(call) -> list[str]:
    return [t for req in call for t in req.candidates]


def test_weights_are_a_softmax_of_logits():
    # odds 1 and 4: weights 1/5 and 4/5; at temperature 2 the odds' square roots, 1 and 2.
    assert particle_weights([0.5, 0.8], 1.0) == pytest.approx([0.2, 0.8])
    assert particle_weights([0.5, 0.8], 2.0) == pytest.approx([1 / 3, 2 / 3])
    assert particle_weights([1.0, 0.0], 1.0) == pytest.approx([1.0, 1e-12], abs=1e-11)  # clipped to odds 1e6 : 1e-6, finite
    assert effective_sample_size([0.25] * 4) == pytest.approx(4.0)
    assert effective_sample_size([1.0, 0.0, 0.0]) == pytest.approx(1.0)


def test_systematic_copies_each_particle_floor_or_ceil_of_k_w_times():
    w = [0.5, 0.3, 0.15, 0.05]
    for seed in range(50):
        counts = Counter(resample_systematic(w, 8, random.Random(seed)))
        for i, wi in enumerate(w):
            assert math.floor(8 * wi) <= counts[i] <= math.ceil(8 * wi)
    assert resample_systematic([0.0, 1.0, 0.0], 3, random.Random(0)) == [1, 1, 1]


def test_multinomial_draws_from_the_weights():
    rng = random.Random(3)
    draws = resample_multinomial([0.1, 0.0, 0.9], 1000, rng)
    assert draws == sorted(draws) and 1 not in draws
    assert 850 < draws.count(2) < 950


def test_resampling_duplicates_likely_particles():
    # A low temperature puts all the weight on s2, so every live slot becomes a copy of it.
    plan = Plan(texts={k: f"\\boxed{{{k}}}" for k in range(4, 8)}, final=range(4, 8))
    scorer = by_step({"s0": 0.3, "s1": 0.4, "s2": 0.9, "s3": 0.2})
    res = ParticleFilter(ScriptedEngine(plan), scorer, params=ParticleFilterParams(n=4, softmax_temperature=0.01)).solve(P)[0]
    calls = [texts(c) for c in scorer.calls]
    assert calls[1] == [f"s2\n\n\\boxed{{{k}}}" for k in range(4, 8)]
    assert len(res.candidates) == 4


def test_no_resampling_above_the_ess_threshold():
    plan = Plan(texts={k: f"\\boxed{{{k}}}" for k in range(4, 8)}, final=range(4, 8))
    scorer = by_step({"s0": 0.3, "s1": 0.4, "s2": 0.9, "s3": 0.2})
    strat = ParticleFilter(ScriptedEngine(plan), scorer, params=ParticleFilterParams(n=4, ess_threshold=0.0))
    strat.solve(P)
    assert [t.split("\n\n")[0] for t in texts(scorer.calls[1])] == ["s0", "s1", "s2", "s3"]
    # ESS here: weights ∝ odds 3/7, 4/6, 9, 2/8 -> ESS ≈ 1.25 of 4 live, so a 0.5 threshold resamples.
    w = particle_weights([0.3, 0.4, 0.9, 0.2], 1.0)
    assert effective_sample_size(w) == pytest.approx(1 / sum(x * x for x in w)) and effective_sample_size(w) < 2


def test_finished_particles_are_absorbing_and_do_not_crowd_out_live_ones():
    # Step 1: particle 0 finishes with a near-certain score; live particles score low. The reference resamples
    # all n from everyone, so copies of the finished particle would take over the population. Here it keeps its
    # single slot and the 3 live slots are drawn from the 3 live particles.
    plan = Plan(texts={0: "\\boxed{7}", **{k: f"\\boxed{{{k}}}" for k in range(4, 7)}}, final={0, 4, 5, 6})
    scorer = by_step({"\\boxed{7}": 0.99, "s1": 0.1, "s2": 0.2, "s3": 0.3}, default=0.5)
    res = ParticleFilter(ScriptedEngine(plan), scorer, params=ParticleFilterParams(n=4, softmax_temperature=0.01)).solve(P)[0]
    calls = [texts(c) for c in scorer.calls]
    assert calls[0] == ["\\boxed{7}", "s1\n\n", "s2\n\n", "s3\n\n"]
    assert calls[1] == ["s3\n\n\\boxed{4}", "s3\n\n\\boxed{5}", "s3\n\n\\boxed{6}"]  # 3 live slots, all s3 (best live)
    assert [c.text for c in res.candidates] == ["\\boxed{7}", *calls[1]]
    assert res.answer == "7" and res.selected == 0  # best by score: the absorbed particle


def test_same_seed_same_result_and_seed_matters():
    def run(seed):
        plan = Plan(texts={k: f"\\boxed{{{k}}}" for k in range(4, 8)}, final=range(4, 8))
        scorer = by_step({"s0": 0.5, "s1": 0.6, "s2": 0.55, "s3": 0.45})
        ParticleFilter(ScriptedEngine(plan), scorer, params=ParticleFilterParams(n=4), seed=seed).solve(P)
        return [t.split("\n\n")[0] for t in texts(scorer.calls[1])]

    assert run(0) == run(0)
    assert len({tuple(run(s)) for s in range(8)}) > 1


@pytest.mark.parametrize("resampling", ["multinomial", "systematic"])
def test_population_size_is_kept(resampling):
    plan = Plan(final={k for k in range(100) if k % 5 == 4})
    scorer = ScriptedScorer(lambda q, steps: [(len(steps[-1]) % 7) / 7 + 0.05 for _ in steps])
    res = ParticleFilter(ScriptedEngine(plan), scorer, params=ParticleFilterParams(n=6, resampling=resampling)).solve(P)[0]
    live = 6
    for call in scorer.calls:
        n_scored = len(texts(call))
        assert n_scored == live
        live -= sum(1 for t in texts(call) if not t.endswith("\n\n"))
    assert len(res.candidates) == 6


def test_registered_and_bad_params():
    assert get_strategy("pf") is ParticleFilter
    with pytest.raises(ValidationError, match=r"`ess_threshold` must be in \[0, 1\], got 1.5"):
        ParticleFilterParams(ess_threshold=1.5)
    with pytest.raises(ValidationError, match=r"`resampling` must be one of multinomial, systematic, got 'stratified'"):
        ParticleFilterParams(resampling="stratified")
    with pytest.raises(ValidationError, match=r"`softmax_temperature` must be > 0, got 0"):
        ParticleFilterParams(softmax_temperature=0)
