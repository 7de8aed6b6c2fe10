"""Speculative Rejection on scripted fakes (rounds, rejection counts, the archive rule, many prompts) and on a
tiny in-process model (survivors are never re-prefilled; memory-triggered decisions; n="auto")."""

from __future__ import annotations

import pytest
from _tiny import make_llama, make_tokenizer

from testtime import Request, SamplingParams, TransformersEngine, ValidationError
from testtime.engines import ScriptedEngine
from testtime.scorers import ScriptedScorer
from testtime.strategies import STRATEGIES, SpeculativeRejection, SpeculativeRejectionParams, get_strategy
from testtime.strategies.speculative_rejection import Round
from testtime.tasks import Problem

# Candidate j of a problem is "[QQ|LLL]xxx...x." with quality QQ and total length LLL (one token per char).
# A partial text scores QQ/100; a complete one (ending in ".") scores (100 - QQ)/100, so the final choice
# visibly uses final scores, not partial ones.
SPECS = {
    "q1": [(90, 15), (10, 100), (80, 100), (70, 30), (20, 100), (60, 100), (95, 12), (30, 100)],
    "q2": [(50, 100), (40, 100), (30, 100), (20, 100), (10, 100), (5, 100), (45, 18), (35, 100)],
}


def candidate_text(q: int, length: int) -> str:
    head = f"[{q:02d}|{length:03d}]"
    return head + "x" * (length - len(head) - 1) + "."


def spec_engine(specs: dict[str, list[tuple[int, int]]]) -> ScriptedEngine:
    """Hands out candidate j's text on a row's first advance (rows start in order); continues it after."""
    handed = {q: 0 for q in specs}

    def handler(request, params, index):
        question = request.messages[-1]["content"]
        if request.partial:
            q, length = int(request.partial[1:3]), int(request.partial[4:7])
            return candidate_text(q, length)[len(request.partial) :]
        j = handed[question]
        handed[question] += 1
        return candidate_text(*specs[question][j])

    return ScriptedEngine(handler)


def spec_scorer() -> ScriptedScorer:
    def fn(question, steps):
        text = steps[-1]
        q = int(text[1:3])
        return [(100 - q) / 100 if text.endswith(".") else q / 100]

    return ScriptedScorer(fn)


def problem(q: str) -> Problem:
    return Problem(id=f"id-{q}", question=q)


SAMPLING = SamplingParams(temperature=1.0, max_tokens=200)


def test_rounds_rejections_and_archive_rule():
    eng, scorer = spec_engine(SPECS), spec_scorer()
    spr = SpeculativeRejection(eng, scorer, params=SpeculativeRejectionParams(n=8, alpha=0.5, decision_tokens=[10, 20, 40]), sampling=SAMPLING)
    res = spr.solve(problem("q1"))[0]
    # t=10: 8 live, keep the top 4 by partial score (95, 90, 80, 70).
    # t=20: the 95 and 90 candidates finished (12, 15 tokens) and went to the archive; they take no live slot,
    #       so the two live ones (80, 70) compete for round(0.5 * 2) = 1 slot: 80 stays.
    # t=40: one live candidate, kept. Then it runs to the end (100 tokens) and is archived.
    assert spr.rounds["id-q1"] == [Round(10, 8, 0, 4), Round(20, 2, 2, 1), Round(40, 1, 0, 0), Round(40, 0, 1, 0)]
    assert [c.num_tokens for c in res.candidates] == [15, 10, 100, 20, 10, 10, 12, 10]
    assert [c.finish_reason for c in res.candidates] == ["eos", None, "eos", None, None, None, "eos", None]
    # Archived candidates keep their final score; rejected ones their last partial score.
    assert [c.score for c in res.candidates] == [0.10, 0.10, 0.20, 0.70, 0.20, 0.60, 0.05, 0.30]
    assert res.selected == 2 and res.text == candidate_text(80, 100)  # best final score among the finished
    assert res.usage.num_generated_tokens == 15 + 4 * 10 + 100 + 20 + 12 == 187
    assert len(scorer.calls) == 4  # one scorer call per round


def test_many_prompts_share_one_batch_and_rank_separately():
    eng, scorer = spec_engine(SPECS), spec_scorer()
    spr = SpeculativeRejection(eng, scorer, params=SpeculativeRejectionParams(n=8, alpha=0.5, decision_tokens=[10, 20, 40]), sampling=SAMPLING)
    res = spr.solve([problem("q1"), problem("q2")])
    assert [r.problem_id for r in res] == ["id-q1", "id-q2"]
    assert spr.rounds["id-q1"] == [Round(10, 8, 0, 4), Round(20, 2, 2, 1), Round(40, 1, 0, 0), Round(40, 0, 1, 0)]
    # q2: t=10 keeps 50, 40, 45, 35 (top 4); t=20: the 45 finished (18 tokens), 3 live -> keep 2 (50, 40);
    # t=40: 2 live -> keep 1 (50); then it finishes.
    assert spr.rounds["id-q2"] == [Round(10, 8, 0, 4), Round(20, 3, 1, 1), Round(40, 2, 0, 1), Round(40, 0, 1, 0)]
    assert res[1].selected == 6  # the archived 45 (final 0.55) beats the last survivor (final 0.50)
    assert all(len(call) == 2 for call in scorer.calls[:3])  # both problems scored in each shared round


def test_alpha_zero_is_best_of_n():
    eng, scorer = spec_engine(SPECS), spec_scorer()
    spr = SpeculativeRejection(eng, scorer, params=SpeculativeRejectionParams(n=8, alpha=0.0, decision_tokens=[10, 20]), sampling=SAMPLING)
    res = spr.solve(problem("q1"))[0]
    assert all(c.finish_reason == "eos" for c in res.candidates)
    assert sum(r.num_rejected for r in spr.rounds["id-q1"]) == 0
    assert res.selected == 1  # final score (100 - 10) / 100 = 0.9 is the best of all eight


def test_registered_and_budget_is_the_initial_n():
    assert STRATEGIES["spr"] is SpeculativeRejection and get_strategy("spr") is SpeculativeRejection
    eng, scorer = spec_engine(SPECS), spec_scorer()
    spr = SpeculativeRejection(eng, scorer, params=SpeculativeRejectionParams(alpha=0.5, decision_tokens=[10]), sampling=SAMPLING).at_budget(4)
    res = spr.solve(problem("q1"))[0]
    assert len(res.candidates) == 4
    assert spr.rounds["id-q1"][0] == Round(10, 4, 0, 2)


def test_weighted_selection_votes_over_finished_answers():
    texts = ["The answer is \\boxed{3}.", "So \\boxed{5}.", "Thus \\boxed{5}!", "Hence \\boxed{3}?"]
    final = dict(zip(texts, [0.8, 0.6, 0.5, 0.1]))  # class 3 totals 0.9, class 5 totals 1.1
    handed = {"n": 0}

    def handler(request, params, index):
        handed["n"] += 1
        return texts[(handed["n"] - 1) % 4]

    scorer = ScriptedScorer(lambda q, steps: [final.get(steps[-1], 0.0)])

    def run(selection):
        params = SpeculativeRejectionParams(n=4, alpha=0.5, decision_tokens=[100], selection=selection)
        return SpeculativeRejection(ScriptedEngine(handler), scorer, params=params, sampling=SAMPLING).solve(Problem(id="w", question="q"))[0]

    weighted = run("auto")  # every finished candidate states an answer: vote
    assert (weighted.answer, weighted.selected) == ("5", 1)
    best = run("best")
    assert (best.answer, best.selected) == ("3", 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param({"alpha": 1.0}, r"`alpha` must be in \[0, 1\)", id="alpha-one"),
        pytest.param({"alpha": -0.1}, r"`alpha` must be in \[0, 1\)", id="alpha-negative"),
        pytest.param({"n": 0}, r"`n` must be an integer >= 1 or 'auto'", id="n-zero"),
        pytest.param({"n": "many"}, r"`n` must be an integer >= 1 or 'auto'", id="n-word"),
        pytest.param({"n": "auto"}, r"set `kv_budget` too", id="auto-without-budget"),
        pytest.param({"decision_tokens": [32, 16]}, r"`decision_tokens` must be increasing", id="schedule-decreasing"),
        pytest.param({"decision_tokens": [0, 16]}, r"`decision_tokens` must be increasing integers >= 1", id="schedule-zero"),
        pytest.param({"kv_budget": 0}, r"`kv_budget` must be None, 'auto' or an integer >= 1", id="budget-zero"),
        pytest.param({"selection": "vote"}, r"`selection` must be one of auto, best, weighted", id="selection"),
        pytest.param({"reduction": "max"}, r"`reduction` must be one of", id="reduction"),
    ],
)
def test_bad_params(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        SpeculativeRejectionParams(**kwargs)


def test_memory_decisions_need_the_in_process_engine():
    spr = SpeculativeRejection(spec_engine(SPECS), spec_scorer(), params=SpeculativeRejectionParams(n=8, kv_budget=10_000), sampling=SAMPLING)
    with pytest.raises(ValidationError, match="needs the in-process engine"):
        spr.solve(problem("q1"))


def test_needs_a_scorer():
    with pytest.raises(ValidationError, match="needs a scorer"):
        SpeculativeRejection(spec_engine(SPECS))


# -- the in-process engine ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    tok = make_tokenizer()
    return TransformersEngine(make_llama(tok), tokenizer=tok, seed=0, device="cpu")


TINY_PROBLEMS = [Problem(id="a", question="Tom has 5 apples"), Problem(id="b", question="What is 6 * 7? Step 1: compute")]
TINY_SAMPLING = SamplingParams(temperature=1.0, max_tokens=16, ignore_eos=True)


def length_scorer() -> ScriptedScorer:
    # Any deterministic score works here; the number of characters varies between rows.
    return ScriptedScorer(lambda q, steps: [len("".join(steps)) % 7 / 7])


def prompt_tokens(engine, problems) -> list[int]:
    return [len(engine.encode(Request(messages=p.chat()))) for p in problems]


def test_survivors_are_never_re_prefilled(tiny):
    spr = SpeculativeRejection(tiny, length_scorer(), params=SpeculativeRejectionParams(n=8, alpha=0.5, decision_tokens=[4, 8, 12]), sampling=TINY_SAMPLING)
    before = tiny.usage.copy()
    res = spr.solve(TINY_PROBLEMS)
    used = tiny.usage - before
    # Each prompt is prefilled once (its last token is fed by the first decode step); rejection after each
    # of the three rounds drops rows without pushing any survivor's prefix through the model again.
    assert used.num_prefill_tokens == sum(t - 1 for t in prompt_tokens(tiny, TINY_PROBLEMS))
    for p in TINY_PROBLEMS:
        assert spr.rounds[p.id] == [Round(4, 8, 0, 4), Round(8, 4, 0, 2), Round(12, 2, 0, 1), Round(12, 0, 1, 0)]
    # 8 rows x 4 tokens, then 4, 2 and 1 rows: every token generated once.
    assert used.num_generated_tokens == 2 * (8 * 4 + 4 * 4 + 2 * 4 + 1 * 4) == 120
    for r in res:
        assert sorted(c.num_tokens for c in r.candidates) == [4, 4, 4, 4, 8, 8, 12, 16]
        assert r.candidates[r.selected].num_tokens == 16 and r.candidates[r.selected].finish_reason == "length"


def test_survivor_text_matches_an_uninterrupted_row(tiny):
    """A survivor continues its own sampling stream: its text equals the same row generated without rejection."""
    spr = SpeculativeRejection(tiny, length_scorer(), params=SpeculativeRejectionParams(n=4, alpha=0.5, decision_tokens=[5]), sampling=TINY_SAMPLING)
    res = spr.solve(TINY_PROBLEMS[0])[0]
    full = SpeculativeRejection(tiny, length_scorer(), params=SpeculativeRejectionParams(n=4, alpha=0.0, decision_tokens=[5]), sampling=TINY_SAMPLING).solve(TINY_PROBLEMS[0])[0]
    survivors = [c for c in res.candidates if c.finish_reason is not None]
    assert len(survivors) == 2
    for c in survivors:
        assert c.text == full.candidates[c.index].text


def test_memory_triggered_decisions(tiny):
    prompt = max(prompt_tokens(tiny, TINY_PROBLEMS[:1]))
    budget = 8 * (prompt + 3)  # 8 rows fill it after 3 new tokens; 4 rows have room up to prompt + 6 new...
    spr = SpeculativeRejection(tiny, length_scorer(), params=SpeculativeRejectionParams(n=8, alpha=0.5, kv_budget=budget), sampling=TINY_SAMPLING)
    spr.solve(TINY_PROBLEMS[0])
    rounds = spr.rounds["a"]
    # Halving the rows doubles the room: 4 rows hold 2 * (prompt + 3) - prompt = prompt + 6 new tokens, which
    # is past max_tokens (16), so the survivors run to the end.
    assert rounds[0] == Round(3, 8, 0, 4)
    assert rounds[1] == Round(prompt + 6, 0, 4, 0)


def test_n_auto_fills_the_budget(tiny):
    prompt = max(prompt_tokens(tiny, TINY_PROBLEMS))
    spr = SpeculativeRejection(tiny, length_scorer(), params=SpeculativeRejectionParams(n="auto", alpha=0.5, kv_budget=3 * (prompt + 32) + 5), sampling=TINY_SAMPLING)
    res = spr.solve(TINY_PROBLEMS)
    assert [len(r.candidates) for r in res] == [3, 3]  # 3 rows of (prompt + 32) fit; one problem per batch
    with pytest.raises(ValidationError, match="cannot hold one row"):
        SpeculativeRejection(tiny, length_scorer(), params=SpeculativeRejectionParams(n="auto", kv_budget=prompt), sampling=TINY_SAMPLING).solve(TINY_PROBLEMS)


class HiddenHeadScorer(ScriptedScorer):
    """A scorer that is also a head on `engine`'s final hidden state (first feature as the score): it declares
    the `HiddenStateScorer` protocol (`engine`, `hidden_layers`, `score_hidden`)."""

    hidden_layers = [-1]

    def __init__(self, engine):
        super().__init__(lambda q, steps: [0.5])
        self.engine = engine
        self.hidden_rows: list[int] = []

    def score_hidden(self, hidden):
        self.hidden_rows.append(hidden.shape[0])
        return hidden[:, 0].tolist()


def test_partial_scores_from_live_hidden_states_cost_no_scorer_tokens(tiny):
    scorer = HiddenHeadScorer(tiny)
    params = SpeculativeRejectionParams(n=8, alpha=0.5, decision_tokens=[4, 8])
    spr = SpeculativeRejection(tiny, scorer, params=params, sampling=TINY_SAMPLING)
    res = spr.solve_batch(TINY_PROBLEMS)
    # Decisions at 4 and 8 tokens read the live batch's hidden states (16, then 8 live rows); only the final
    # round's finished candidates (2 per problem) go through the text scorer.
    assert scorer.hidden_rows == [16, 8]
    assert len(scorer.calls) == 1 and [len(r.candidates) for r in scorer.calls[0]] == [2, 2]
    assert scorer.usage.num_tokens == sum(len(p.question) + len(c.text) for p, r in zip(TINY_PROBLEMS, res) for c in r.candidates if c.finish_reason)
    for p in TINY_PROBLEMS:
        assert spr.rounds[p.id] == [Round(4, 8, 0, 4), Round(8, 4, 0, 2), Round(8, 0, 2, 0)]
    # On the scheduler each problem is a program: the same rounds and candidates, its own rows read each time.
    scheduled = HiddenHeadScorer(tiny)
    spr2 = SpeculativeRejection(tiny, scheduled, params=params, sampling=TINY_SAMPLING)
    assert [[c.text for c in r.candidates] for r in spr2.solve(TINY_PROBLEMS)] == [[c.text for c in r.candidates] for r in res]
    assert sorted(scheduled.hidden_rows) == [4, 4, 8, 8] and spr2.rounds == spr.rounds
    with pytest.raises(ValidationError, match="needs a scorer with `score_hidden`"):
        SpeculativeRejection(tiny, length_scorer(), params=SpeculativeRejectionParams(n=4, partial_scores="hidden"), sampling=TINY_SAMPLING).solve(TINY_PROBLEMS[0])


def test_hidden_state_scoring_is_declared_and_checked_in_one_place(tiny):
    """`live_scorer` is the one check: a `HiddenStateScorer` of this very engine, on a `HiddenStateBatch`. A head
    on another engine's model, or a batch that keeps no states (a remote engine's), scores text instead."""
    from testtime.engines import HiddenStateBatch, TextLiveBatch
    from testtime.scorers import HiddenStateScorer
    from testtime.strategies._live_scores import live_scorer

    head = HiddenHeadScorer(tiny)
    batch = tiny.start()
    assert isinstance(head, HiddenStateScorer) and isinstance(batch, HiddenStateBatch)
    assert not isinstance(length_scorer(), HiddenStateScorer) and not isinstance(TextLiveBatch(spec_engine(SPECS)), HiddenStateBatch)
    assert live_scorer(head, tiny, batch) is not None and live_scorer(head, tiny, batch, "text") is None
    assert live_scorer(HiddenHeadScorer(spec_engine(SPECS)), tiny, batch) is None  # a head on another model
    assert live_scorer(head, tiny, TextLiveBatch(spec_engine(SPECS))) is None
    with pytest.raises(ValidationError, match="needs a scorer with `score_hidden`"):
        live_scorer(HiddenHeadScorer(spec_engine(SPECS)), tiny, batch, "hidden")


def test_runs_inside_testtime_eval(tmp_path):
    """`testtime eval --strategy spr --n 4,8`: one SpR run per budget, graded like any strategy."""
    import random

    from testtime.eval import EvalConfig, run_eval

    def handler(request, params, index):
        if request.partial:  # continue the answer this row started
            return FULL[request.partial[:3]][len(request.partial) :]
        key = f"{random.Random(params.seed).randrange(100):03d}"
        return FULL.setdefault(key, key + " step one.\n\nTherefore, the final answer is: $\\boxed{" + ("5" if int(key) % 3 else "4") + "}$.")

    FULL: dict[str, str] = {}
    scorer = ScriptedScorer(lambda q, steps: [0.9 if "{5}" in steps[-1] else 0.1])
    problems = [Problem(id=f"e{k}", question=f"q{k}", answer="5") for k in range(3)]
    cfg = EvalConfig(task="scripted", strategies=["spr"], n=[4, 8], out=str(tmp_path / "run"), max_tokens=100)
    report = run_eval(cfg, engine=ScriptedEngine(handler), scorer=scorer, problems=problems, progress=False, log=lambda *_: None)
    assert [(r.strategy, r.n) for r in report.summary] == [("spr", 4), ("spr", 8)]
    assert all(r.mean_generated_tokens > 0 and r.mean_compute_tokens > r.mean_generated_tokens for r in report.summary)
    assert len(report.rows) == 3 and all(set(r["by_n"]) == {"4", "8"} for r in report.rows)


def test_auto_kv_budget_from_free_memory(tiny, monkeypatch):
    from testtime.strategies.speculative_rejection import kv_token_budget

    pages = {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr("os.sysconf", lambda name: pages[name])
    # Tiny llama: 2 layers x 2 KV heads x head size 16 x fp32, keys and values: 512 bytes per token.
    assert kv_token_budget(tiny) == 4_096_000 // 2 // 512 == 4000
    assert kv_token_budget(tiny, memory_fraction=0.25) == 2000
    with pytest.raises(ValidationError, match="has none; pass an integer `kv_budget`"):
        kv_token_budget(spec_engine(SPECS))


def test_step_aligned_decisions_score_complete_steps():
    steps = {"s": ["ab\n\ncdefgh\n\nij.", "bcdefg\n\ngh\n\nij.", "cdefghijkl\n\nk.", "d.e"]}
    handed = {"n": 0}

    def handler(request, params, index):
        if request.partial:
            return next(t for t in steps["s"] if t.startswith(request.partial))[len(request.partial) :]
        handed["n"] += 1
        return steps["s"][handed["n"] - 1]

    scorer = ScriptedScorer(lambda q, st: [len(st) / 10])
    params = SpeculativeRejectionParams(n=4, alpha=0.5, decision_tokens=[2], step_aligned=True, max_step_tokens=6)
    spr = SpeculativeRejection(ScriptedEngine(handler), scorer, params=params, sampling=SAMPLING)
    res = spr.solve(Problem(id="s", question="s"))[0]
    # At the decision (2 tokens) each live row runs on to its step's end, at most 6 more tokens: rows 0 and 1
    # end their first step; row 2's step is longer than 2 + 6 tokens and is cut; row 3 finished ("d.e", 3 tokens).
    first = scorer.calls[0][0].candidates
    assert first == ["ab\n\n", "bcdefg\n\n", "cdefghij", "d.e"]
    assert spr.rounds["s"][0] == Round(2, 3, 1, 1)
    assert res.candidates[3].finish_reason == "eos"


def test_generic_callers_set_n_through_make_strategy():
    from testtime.strategies import SamplingStrategyParams, make_strategy

    spr = make_strategy("spr:reduction=min", spec_engine(SPECS), spec_scorer(), n=4, sampling=SAMPLING)
    assert (spr.params.n, spr.params.reduction, spr.params.alpha, spr.name) == (4, "min", 0.5, "spr:reduction=min")
    with pytest.raises(ValidationError, match="strategy 'spr' takes SpeculativeRejectionParams, got SamplingStrategyParams"):
        SpeculativeRejection(spec_engine(SPECS), spec_scorer(), params=SamplingStrategyParams(n=4, reduction="min"), sampling=SAMPLING)
