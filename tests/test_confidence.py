"""Confidence metrics against hand-computed values, the confidence scorer family, and SpR with it."""

from __future__ import annotations

import math

import pytest

from testtime import ScorerError, ValidationError
from testtime.engines import ScriptedEngine, TokenLogprobs
from testtime.engines.scripted import Scripted
from testtime.scorers import (
    CONFIDENCE_METRICS,
    ConfidenceScorer,
    ConfidenceTrace,
    ScoreRequest,
    confidence_metric,
    load_scorer,
)
from testtime.strategies import (
    BestOfN,
    Candidate,
    SamplingStrategyParams,
    SpeculativeRejection,
    SpeculativeRejectionParams,
    WeightedBestOfN,
)
from testtime.strategies._select import weighted_vote
from testtime.tasks import Problem

# Five tokens, top-2 logprobs each. Token confidence = -mean(top-2):
#   t0 (-0.1 - 2.0)/2 -> 1.05   t1 -> 1.00   t2 -> 1.60   t3 -> 1.10   t4 -> 1.40
TOP = [[-0.1, -2.0], [-0.5, -1.5], [-0.2, -3.0], [-1.0, -1.2], [-0.3, -2.5]]
SAMPLED = [-0.1, -1.5, -0.2, -1.2, -0.3]  # the sampled token was the top one except at t1 and t3
KL = [2.0, 1.0, 3.0, 0.5, 2.5]
LP = TokenLogprobs(logprobs=SAMPLED, tokens=list(range(5)), top_logprobs=TOP, top_tokens=[[0, 1]] * 5, kl_from_uniform=KL)


def trace() -> ConfidenceTrace:
    return ConfidenceTrace.from_logprobs(LP)


def test_token_confidence_is_minus_the_mean_of_the_top_k():
    assert trace().confidence == pytest.approx([1.05, 1.0, 1.6, 1.1, 1.4])


@pytest.mark.parametrize(
    "metric, kwargs, want",
    [
        pytest.param("logprob", {}, (-0.1 - 1.5 - 0.2 - 1.2 - 0.3) / 5, id="mean-logprob"),  # -0.66
        pytest.param("mean", {}, (1.05 + 1.0 + 1.6 + 1.1 + 1.4) / 5, id="mean-confidence"),  # 1.23
        # window 2 -> window means 1.025, 1.30, 1.35, 1.25
        pytest.param("group", {"window": 2}, 1.25, id="group-is-the-last-window"),
        pytest.param("lowest-group", {"window": 2}, 1.025, id="lowest-group"),
        pytest.param("lowest-group", {"window": 3}, min((1.05 + 1.0 + 1.6) / 3, (1.0 + 1.6 + 1.1) / 3, (1.6 + 1.1 + 1.4) / 3), id="lowest-group-w3"),
        pytest.param("lowest-group", {"window": 8}, 1.23, id="shorter-than-window-is-one-group"),
        pytest.param("tail", {"tail": 3}, (1.6 + 1.1 + 1.4) / 3, id="tail"),
        pytest.param("self-certainty", {}, sum(KL) / 5, id="self-certainty-exact"),
    ],
)
def test_metrics_by_hand(metric, kwargs, want):
    assert confidence_metric(trace(), metric, **kwargs) == pytest.approx(want)


def test_bottom10_averages_the_lowest_tenth_of_the_windows():
    # 22 tokens with confidences 1..22 reversed in places: window 1 gives 22 windows -> int(2.2) = 2 lowest.
    confs = [5.0, 3.0, 9.0, 1.0, 7.0, 2.0] + [10.0] * 16
    t = ConfidenceTrace(logprob=[0.0] * 22, confidence=confs, certainty=[])
    assert confidence_metric(t, "bottom10-group", window=1) == pytest.approx((1.0 + 2.0) / 2)
    # Nine windows or fewer: int(0.9) = 0, at least one: the lowest.
    assert confidence_metric(ConfidenceTrace([0.0] * 9, confs[:9], []), "bottom10-group", window=1) == 1.0
    # A mean over all windows, or the 10% highest, would differ:
    assert confidence_metric(t, "mean") != pytest.approx(1.5)


def test_self_certainty_top_k_approximation_without_the_full_distribution():
    lp = TokenLogprobs(logprobs=SAMPLED, top_logprobs=TOP, kl_from_uniform=None)
    # KL(uniform over 2 || renormalized top-2) for token 0: p = softmax(-0.1, -2.0)
    p0 = [math.exp(-0.1), math.exp(-2.0)]
    z = sum(p0)
    kl0 = sum(0.5 * math.log(0.5 / (p / z)) for p in p0)
    assert ConfidenceTrace.from_logprobs(lp).certainty[0] == pytest.approx(kl0)


def test_empty_trace_scores_zero_and_partial_traces_score_their_prefix():
    empty = ConfidenceTrace([], [], [])
    assert all(confidence_metric(empty, m) == 0.0 for m in CONFIDENCE_METRICS)
    prefix = ConfidenceTrace.from_logprobs(TokenLogprobs(logprobs=SAMPLED[:2], top_logprobs=TOP[:2]))
    assert confidence_metric(prefix, "logprob") == pytest.approx(-0.8)


def test_trace_round_trips_through_json():
    d = trace().to_dict()
    assert d["confidence"] == [1.05, 1.0, 1.6, 1.1, 1.4] and d["certainty"] == KL
    assert ConfidenceTrace.from_dict(d) == trace()


def test_scorer_reads_logprobs_from_the_request_and_costs_no_tokens():
    s = load_scorer("confidence:lowest-group", window=2)
    assert isinstance(s, ConfidenceScorer) and s.num_logprobs == 5
    req = ScoreRequest(question="q", candidates=["a", "b"], logprobs=[LP, TokenLogprobs(logprobs=[-1.0], top_logprobs=[[-4.0, -6.0]])])
    assert s.score(req) == [[[pytest.approx(1.025)], [5.0]]]
    assert s.usage.num_tokens == 0 and s.usage.num_calls == 1
    assert load_scorer("confidence:logprob").num_logprobs == 0  # the sampled token's logprob suffices


@pytest.mark.parametrize(
    "call, error, match",
    [
        pytest.param(lambda: load_scorer("confidence:nope"), ValidationError, "confidence metric must be one of", id="unknown-metric"),
        pytest.param(lambda: ConfidenceScorer("mean", window=0), ValidationError, "`window` must be an integer >= 1", id="window"),
        pytest.param(lambda: ConfidenceScorer("mean", top_logprobs=21), ValidationError, r"`top_logprobs` must be an integer in \[1, 20\]", id="k"),
        pytest.param(lambda: ConfidenceScorer("mean").score(ScoreRequest(candidates=["a"])), ScorerError, "score request 0 has none", id="no-logprobs"),
        pytest.param(
            lambda: ConfidenceScorer("tail").score(ScoreRequest(candidates=["a"], logprobs=[TokenLogprobs(logprobs=[-1.0], top_logprobs=[[]])])),
            ScorerError,
            "returned only the sampled token's",
            id="no-top-k",
        ),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_weighted_vote_refuses_negative_weights():
    with pytest.raises(ValidationError, match="needs scores >= 0"):
        weighted_vote([Candidate(answer="1", score=-0.5), Candidate(answer="2", score=0.1)])


# -- strategies with the confidence scorer -------------------------------------------------------------------


def confident_engine(profiles: dict[str, list[list[float]]]) -> ScriptedEngine:
    """Candidate j of question q writes len(profile) one-character tokens whose sampled logprob (and top-1) is
    profile[t]; candidates are handed out in row order, and a continuation picks up where the text ends."""
    handed = {q: 0 for q in profiles}

    def handler(request, params, index):
        q = request.messages[-1]["content"]
        if request.partial:
            j = int(request.partial[1:3])
        else:  # rows start in order; a second run on the same engine starts again at candidate 0
            j = handed[q] % len(profiles[q])
            handed[q] += 1
        prof = profiles[q][j]
        text = f"#{j:02d}#" + "x" * (len(prof) - 4)
        done = len(request.partial)
        return Scripted(text=text[done:], logprobs=prof[done:], top_logprobs=[[v] for v in prof[done:]])

    return ScriptedEngine(handler)


def test_best_of_n_with_the_likelihood_reward_picks_the_highest_mean_logprob():
    profiles = {"q": [[-1.0] * 10, [-0.2] * 30, [-0.5] * 20]}
    eng = confident_engine(profiles)
    res = BestOfN(eng, load_scorer("confidence:logprob"), params=SamplingStrategyParams(n=3)).solve(Problem(id="p", question="q"))[0]
    assert [c.score for c in res.candidates] == pytest.approx([-1.0, -0.2, -0.5])
    assert res.selected == 1 and res.usage.num_scored_tokens == 0
    assert eng.calls[0][1].logprobs == 0  # the strategy asked the engine for the sampled tokens' logprobs
    with pytest.raises(ValidationError, match="needs scores >= 0"):
        WeightedBestOfN(confident_engine(profiles), load_scorer("confidence:logprob"), params=SamplingStrategyParams(n=3)).solve(Problem(id="p", question="q"))


def test_speculative_rejection_ranks_partial_answers_by_their_running_mean_logprob():
    # Four candidates of 40 tokens. Partial means at the decision point (10 tokens): c0 -0.1, c1 -0.9, c2 -0.3,
    # c3 -0.5; alpha 0.5 keeps c0 and c2. Final means: c0 (-0.1 x10, -2.0 x30) = -1.525, c2 -0.3. The
    # rejected c1 would have ended best (-0.9 x10, 0.0 x30 = -0.225): a partial reward is a bet.
    prof = {
        "q": [
            [-0.1] * 10 + [-2.0] * 30,
            [-0.9] * 10 + [0.0] * 30,
            [-0.3] * 40,
            [-0.5] * 10 + [-0.1] * 30,
        ]
    }
    eng = confident_engine(prof)
    spr = SpeculativeRejection(eng, load_scorer("confidence:logprob"), params=SpeculativeRejectionParams(n=4, alpha=0.5, decision_tokens=[10]))
    res = spr.solve(Problem(id="p", question="q"))[0]
    assert [c.finish_reason for c in res.candidates] == ["eos", None, "eos", None]
    assert [c.num_tokens for c in res.candidates] == [40, 10, 40, 10]
    assert res.candidates[1].score == pytest.approx(-0.9) and res.candidates[3].score == pytest.approx(-0.5)
    assert res.candidates[0].score == pytest.approx(-1.525) and res.candidates[2].score == pytest.approx(-0.3)
    assert res.selected == 2  # best final reward among the finished
    assert res.usage.num_generated_tokens == 100 and res.usage.num_scored_tokens == 0
