"""DeepConf (offline and online) and adaptive self-consistency on scripted engines with known logprobs, and
on a tiny in-process model (accounting, same samples as majority)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from _tiny import make_llama, make_tokenizer

from testtime import SamplingParams, TransformersEngine, ValidationError
from testtime.engines import ScriptedEngine, TokenLogprobs
from testtime.engines.scripted import Scripted
from testtime.strategies import (
    AdaptiveConsistency,
    AdaptiveParams,
    Candidate,
    DeepConf,
    DeepConfOnline,
    DeepConfOnlineParams,
    DeepConfParams,
    MajorityVote,
    SamplingStrategyParams,
    get_strategy,
)
from testtime.strategies._confidence import confidence_vote
from testtime.strategies.adaptive import beta_stop_probability, dirichlet_stop_probability
from testtime.tasks import Problem


def trace_engine(traces: dict[str, list[tuple[str | None, list[float]]]]) -> ScriptedEngine:
    """Trace j of question q is (answer, confidences): text "#jj#xxx...\boxed{A}", one token per character
    except the "#jj#" head (one token, so even a one-token continuation knows its trace), every token's top-2
    logprobs both -conf (so its token confidence is conf). Traces are handed out in row order."""
    handed = {q: 0 for q in traces}

    def tokenize(text: str) -> list[str]:
        return re.findall(r"#\d\d#|.", text, flags=re.S)

    def text_of(j: int, answer: str | None, length: int) -> str:
        tail = f"\\boxed{{{answer}}}" if answer is not None else ""
        return f"#{j:02d}#" + "x" * (length - 1 - len(tail)) + tail

    def handler(request, params, index):
        q = request.messages[-1]["content"]
        if request.partial:
            j = int(request.partial[1:3])
        else:
            j = handed[q]
            handed[q] += 1
        answer, confs = traces[q][j]
        done = len(tokenize(request.partial))
        text = "".join(tokenize(text_of(j, answer, len(confs)))[done:])
        return Scripted(text=text, logprobs=[-c for c in confs[done:]], top_logprobs=[[-c, -c] for c in confs[done:]])

    return ScriptedEngine(handler, tokenize=tokenize)


def problem(q: str = "q", answer: str | None = "5") -> Problem:
    return Problem(id=f"id-{q}", question=q, answer=answer)


SAMPLING = SamplingParams(temperature=1.0, max_tokens=200)

# -- offline ----------------------------------------------------------------------------------------------------


def cand(answer, conf):
    return Candidate(answer=answer, logprobs=TokenLogprobs(logprobs=[-conf] * 4, top_logprobs=[[-conf, -conf]] * 4))


def test_offline_vote_filters_by_percentile_then_weights_by_confidence():
    # Majority says "1" (3 votes). Among the answered, keep = 0.5 -> threshold = median of
    # [0.9, 1.0, 1.1, 1.2, 4.0, 5.0] = 1.15 -> kept c2 (1.2), c3 (5.0), c4 (4.0): weights 1:1.2, 2:5.0, 3:4.0 -> "2".
    # An unweighted vote over the kept would tie and pick "1"; no filter would give "1"; unanswered traces (c6)
    # do not move the threshold.
    cs = [cand("1", 1.0), cand("1", 1.1), cand("1", 1.2), cand("2", 5.0), cand("3", 4.0), cand("3", 0.9), cand(None, 50.0)]
    confs = [1.0, 1.1, 1.2, 5.0, 4.0, 0.9, 50.0]
    pick, threshold = confidence_vote(cs, confs, keep=0.5, metric="mean")
    assert threshold == pytest.approx(1.15) and pick == 3
    assert DeepConf(ScriptedEngine(lambda *a: ""), params=DeepConfParams(keep=0.5, metric="mean")).select(cs) == 3
    # keep = 1.0 is a confidence-weighted vote over all answered traces: 1: 3.3, 2: 5.0, 3: 4.9 -> "2" still;
    # keep = 0.9 drops only the lowest (0.9) -> 3: 4.0 < 2: 5.0.
    assert confidence_vote(cs, confs, keep=1.0, metric="mean")[0] == 3
    assert MajorityVote(ScriptedEngine(lambda *a: "")).select(cs) == 0


def test_offline_deepconf_samples_with_logprobs_and_prices_like_majority():
    traces = {"q": [("5", [1.0] * 20), ("7", [3.0] * 20), ("7", [2.5] * 20), ("5", [0.5] * 20)]}
    eng = trace_engine(traces)
    res = DeepConf(eng, params=DeepConfParams(n=4, keep=0.5, metric="mean"), sampling=SAMPLING).solve(problem())[0]
    assert eng.calls[0][1].logprobs == 5  # DeepConfParams.top_logprobs
    assert res.answer == "7" and res.selected == 1
    assert res.usage.num_generated_tokens == 80


# -- online ----------------------------------------------------------------------------------------------------

# Warm-up (4 traces, 20 tokens): confidences 1, 2, 3, 4 -> threshold (keep 0.5) = median = 2.5. Votes of all
# finished traces: "7": 1 + 4 = 5, "5": 2 + 3 = 5 -> share 0.5 < 0.6: sampling goes on.
# Final traces, checked every 16 tokens (window 4):
#   t4 "5" at 3.0, 30 tokens: finishes in the second chunk.
#   t5 "5" at 3.0 for 20 tokens, then 1.0: window 18..21 = (3+3+1+1)/4 = 2.0 < 2.5 -> dropped; its chunk ran to 32.
#   t6 "7" at 2.0: first full window (tokens 0-3) is 2.0 < 2.5 -> dropped after its first chunk, 16 tokens.
#   t7 "5" at 4.0, 100 tokens: still running when t4 finishes; then "5" holds 2 + 3 + 3 = 8 of 13 = 0.62 >= 0.6:
#      settled, t7 stops at 32 tokens.
# Final vote over finished traces at or above 2.5: t2 "5" (3), t3 "7" (4), t4 "5" (3) -> "5"; its most confident
# member, first by index: t2.
ONLINE = {
    "q": [
        ("7", [1.0] * 20),
        ("5", [2.0] * 20),
        ("5", [3.0] * 20),
        ("7", [4.0] * 20),
        ("5", [3.0] * 30),
        ("5", [3.0] * 20 + [1.0] * 20),
        ("7", [2.0] * 40),
        ("5", [4.0] * 100),
    ]
}


def test_online_threshold_drops_and_consensus_stop():
    eng = trace_engine(ONLINE)
    params = DeepConfOnlineParams(n=8, warmup=4, keep=0.5, consensus=0.6, metric="lowest-group", window=4, check_every=16)
    strat = DeepConfOnline(eng, params=params, sampling=SAMPLING)
    res = strat.solve(problem())[0]
    assert res.details == {"threshold": 2.5, "warmup": 4, "stopped_low_confidence": 2, "stopped_by_consensus": 1, "voters": 3}
    assert [c.num_tokens for c in res.candidates] == [20, 20, 20, 20, 30, 32, 16, 32]
    assert [c.finish_reason for c in res.candidates] == ["eos"] * 5 + [None] * 3
    assert [c.answer for c in res.candidates][5:] == [None, None, None]  # stopped traces do not vote
    assert res.answer == "5" and res.selected == 2
    assert res.usage.num_generated_tokens == 190 == eng.usage.num_generated_tokens


def test_online_stops_after_the_warmup_when_it_already_agrees():
    traces = {"q": [("5", [c] * 20) for c in (1.0, 2.0, 3.0, 4.0)] + [("5", [4.0] * 20)] * 4}
    eng = trace_engine(traces)
    res = DeepConfOnline(eng, params=DeepConfOnlineParams(n=8, warmup=4, keep=0.1, window=4), sampling=SAMPLING).solve(problem())[0]
    assert len([c for c in res.candidates if c.num_tokens]) == 4 and res.usage.num_generated_tokens == 80
    # keep 0.1: threshold = the 90th percentile of 1, 2, 3, 4 = 3.7, so only trace 3 votes.
    assert res.details["threshold"] == pytest.approx(3.7) and res.details["voters"] == 1 and res.selected == 3


def test_online_without_consensus_runs_the_whole_budget_on_many_problems():
    traces = {"a": ONLINE["q"], "b": [("9", [3.0] * 16)] * 8}
    eng = trace_engine(traces)
    params = DeepConfOnlineParams(n=8, warmup=4, keep=0.5, consensus=1.0, window=4)
    ra, rb = DeepConfOnline(eng, params=params, sampling=SAMPLING).solve([problem("a"), problem("b", "9")])
    # No consensus stop on "a" (the vote never becomes unanimous): t7 runs its 100 tokens.
    assert [c.num_tokens for c in ra.candidates] == [20, 20, 20, 20, 30, 32, 16, 100]
    assert ra.details["stopped_by_consensus"] == 0
    # "b" agrees at once (unanimous after the warm-up) and stops.
    assert rb.answer == "9" and rb.usage.num_generated_tokens == 64 and rb.details["threshold"] == 3.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param({"keep": 0}, r"`keep` must be in \(0, 1\]", id="keep"),
        pytest.param({"warmup": 0}, "`warmup` must be None or an integer >= 1", id="warmup"),
        pytest.param({"consensus": 1.5}, r"`consensus` must be in \(0, 1\]", id="consensus"),
        pytest.param({"metric": "max"}, "`metric` must be one of", id="metric"),
        pytest.param({"top_logprobs": 0}, r"`top_logprobs` must be an integer in \[1, 20\]", id="k"),
    ],
)
def test_online_bad_params(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        DeepConfOnlineParams(**kwargs)


# -- adaptive ------------------------------------------------------------------------------------------------


def beta_integral(a: int, b: int) -> float:
    """P(p > 1/2) for p ~ Beta(a + 1, b + 1), by numerical integration (the paper's formula)."""
    x = np.linspace(0, 1, 200_001)
    f = x**a * (1 - x) ** b
    return float(np.trapezoid(f[x >= 0.5], x[x >= 0.5]) / np.trapezoid(f, x))


@pytest.mark.parametrize("a, b", [(3, 0), (4, 0), (5, 1), (6, 1), (7, 1), (3, 3), (10, 4)])
def test_beta_rule_is_the_exact_posterior_probability(a, b):
    counts = [c for c in (a, b, b - 1) if c > 0]  # a third, smaller class does not enter the two-way comparison
    got = beta_stop_probability(counts)
    assert got == pytest.approx(beta_integral(a, b), abs=1e-6)
    assert beta_stop_probability([4]) == 31 / 32 and beta_stop_probability([3]) == 15 / 16


def test_dirichlet_rule_is_seeded_and_ordered():
    assert dirichlet_stop_probability([8, 1, 1]) == dirichlet_stop_probability([8, 1, 1])
    assert dirichlet_stop_probability([8, 1, 1]) > 0.95 > dirichlet_stop_probability([3, 2, 2])
    assert dirichlet_stop_probability([]) == 0.0


def answers_engine(answers: dict[str, list[str | None]]) -> ScriptedEngine:
    return trace_engine({q: [(a, [1.0] * 16) for a in seq] for q, seq in answers.items()})


def test_adaptive_stops_after_the_wave_where_the_posterior_passes():
    # Wave 1: 5,5,5,7 -> P(Bin(5, 1/2) <= 3) = 26/32 = 0.81 < 0.95 -> go on.
    # Wave 2: 5,5,5,5 -> a = 7, b = 1: P(Bin(9, 1/2) <= 7) = 502/512 = 0.98 -> stop at 8 samples.
    # "q2" never settles (all different) and runs to the budget 16.
    eng = answers_engine({"q1": ["5", "5", "5", "7"] + ["5"] * 12, "q2": [str(i) for i in range(16)]})
    r1, r2 = AdaptiveConsistency(eng, params=AdaptiveParams(n=16, wave=4), sampling=SAMPLING).solve([problem("q1"), problem("q2")])
    assert len(r1.candidates) == 8 and r1.details["stop_probability"] == pytest.approx(502 / 512) and r1.answer == "5"
    assert len(r2.candidates) == 16 and r2.details["samples"] == 16
    assert [c.index for c in r1.candidates] == list(range(8))
    assert r1.usage.num_generated_tokens == 8 * 16 and r2.usage.num_generated_tokens == 16 * 16


def test_adaptive_with_four_agreeing_votes_stops_after_one_wave():
    eng = answers_engine({"q": ["5"] * 16})
    res = AdaptiveConsistency(eng, params=AdaptiveParams(n=16, wave=4), sampling=SAMPLING).solve(problem())[0]
    assert len(res.candidates) == 4 and res.details["stop_probability"] == 31 / 32
    # Three agreeing votes (15/16 < 0.95) are not enough: with waves of 3 it takes a second wave.
    eng = answers_engine({"q": ["5"] * 16})
    assert len(AdaptiveConsistency(eng, params=AdaptiveParams(n=16, wave=3), sampling=SAMPLING).solve(problem())[0].candidates) == 6


def test_registered_names():
    assert get_strategy("deepconf") is DeepConf and get_strategy("deepconf-online") is DeepConfOnline and get_strategy("adaptive") is AdaptiveConsistency


# -- tiny in-process model --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    tok = make_tokenizer()
    return TransformersEngine(make_llama(tok, init=0.05), tokenizer=tok, seed=0)


def test_online_on_the_in_process_engine_counts_exactly_the_tokens_generated(tiny):
    p = Problem(id="t", question="Tom has 5 apples", answer="5")
    sampling = SamplingParams(temperature=1.0, max_tokens=40)
    params = DeepConfOnlineParams(n=8, warmup=3, keep=0.5, window=4, check_every=8)
    before = tiny.usage.num_generated_tokens
    res = DeepConfOnline(tiny, params=params, sampling=sampling, seed=1).solve(p)[0]
    eos = sum(c.finish_reason == "eos" for c in res.candidates)  # the engine counts the EOS step, candidates do not
    assert tiny.usage.num_generated_tokens - before == res.usage.num_generated_tokens + eos
    assert res.details["stopped_low_confidence"] > 0  # the tiny model's flat distributions drop traces
    # Candidate j is majority's candidate j (one problem, same seed): the warm-up traces equal it, and the
    # stopped ones are its prefixes.
    maj = MajorityVote(tiny, params=SamplingStrategyParams(n=8), sampling=sampling, seed=1).solve(p)[0]
    for c in res.candidates:
        assert maj.candidates[c.index].text.startswith(c.text)
    assert [c.text for c in res.candidates[:3]] == [c.text for c in maj.candidates[:3]]


def test_adaptive_samples_are_majoritys_first_samples(tiny):
    p = Problem(id="t", question="What is 6 * 7?", answer="42")
    sampling = SamplingParams(temperature=1.0, max_tokens=24)
    ada = AdaptiveConsistency(tiny, params=AdaptiveParams(n=6, wave=2), sampling=sampling, seed=3).solve(p)[0]
    maj = MajorityVote(tiny, params=SamplingStrategyParams(n=6), sampling=sampling, seed=3).solve(p)[0]
    assert [c.text for c in ada.candidates] == [c.text for c in maj.candidates[: len(ada.candidates)]]
    assert math.isclose(ada.usage.num_generated_tokens, sum(c.num_tokens for c in ada.candidates))


@pytest.mark.parametrize("cls", [MajorityVote, DeepConfOnline])
def test_a_prompt_too_long_is_named_by_its_problem(tiny, cls):
    problems = [Problem(id="short", question="hi"), Problem(id="long-one", question="hello world " * 200)]
    with pytest.raises(ValidationError, match=r"^problem long-one: prompt \(\d+ tokens\) \+ `max_tokens` \(100\) exceeds"):
        cls(tiny, sampling=SamplingParams(max_tokens=100)).at_budget(2).solve(problems)
