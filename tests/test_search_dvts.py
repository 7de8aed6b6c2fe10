"""DVTS step by step on a scripted engine and scorer: independent subtrees, each continued from its best child,
and only completed leaves returned (the reference also returns unfinished siblings)."""

from __future__ import annotations

import pytest
from _search_fakes import Plan, by_step, texts

from testtime import ValidationError
from testtime.engines import ScriptedEngine
from testtime.strategies import DVTS, DVTSParams, get_strategy
from testtime.tasks import Problem

P = Problem(id="p1", question="q1", answer="7")


def test_each_subtree_continues_from_its_best_child():
    # n=4, M=2: two subtrees {s0, s1} and {s2, s3}.
    plan = Plan(texts={k: f"\\boxed{{{k}}}" for k in range(8, 12)}, final=range(8, 12))
    scorer = by_step({"s0": 0.2, "s1": 0.8, "s2": 0.6, "s3": 0.4, "s4": 0.3, "s5": 0.1, "s6": 0.2, "s7": 0.9, "\\boxed{8}": 0.5, "\\boxed{9}": 0.7, "\\boxed{10}": 0.6, "\\boxed{11}": 0.1})
    res = DVTS(ScriptedEngine(plan), scorer, params=DVTSParams(n=4, beam_width=2)).solve(P)[0]
    calls = [texts(c) for c in scorer.calls]
    assert calls[0] == ["s0\n\n", "s1\n\n", "s2\n\n", "s3\n\n"]
    # Subtree 0 goes on from s1, subtree 1 from s2 (a global ranking would have kept s1 and s2's sibling s3 too).
    assert calls[1] == ["s1\n\ns4\n\n", "s1\n\ns5\n\n", "s2\n\ns6\n\n", "s2\n\ns7\n\n"]
    assert calls[2] == ["s1\n\ns4\n\n\\boxed{8}", "s1\n\ns4\n\n\\boxed{9}", "s2\n\ns7\n\n\\boxed{10}", "s2\n\ns7\n\n\\boxed{11}"]
    assert [c.text for c in res.candidates] == calls[2]
    assert res.answer == "9" and res.candidates[res.selected].score == 0.7


def test_only_completed_leaves_are_candidates():
    # Step 2: in subtree 0 the best child finishes (boxed 4, 0.9) while its sibling s5 does not: the subtree
    # ends and s5 is dropped (the reference returns it as a candidate). Subtree 1 goes on to the end.
    plan = Plan(texts={4: "\\boxed{4}", 8: "\\boxed{8}", 9: "\\boxed{9}"}, final={4, 8, 9})
    scorer = by_step({"\\boxed{4}": 0.9, "s5": 0.1, "s6": 0.5, "s7": 0.4}, default=0.3)
    res = DVTS(ScriptedEngine(plan), scorer, params=DVTSParams(n=4, beam_width=2)).solve(P)[0]
    calls = [texts(c) for c in scorer.calls]
    assert calls[1] == ["s0\n\n\\boxed{4}", "s0\n\ns5\n\n", "s2\n\ns6\n\n", "s2\n\ns7\n\n"]
    assert calls[2] == ["s2\n\ns6\n\n\\boxed{8}", "s2\n\ns6\n\n\\boxed{9}"]  # subtree 0 no longer generates
    assert [c.text for c in res.candidates] == ["s0\n\n\\boxed{4}", "s2\n\ns6\n\n\\boxed{8}", "s2\n\ns6\n\n\\boxed{9}"]
    assert all(c.finish_reason == "eos" for c in res.candidates)


def test_a_finished_sibling_of_an_unfinished_best_child_is_dropped():
    plan = Plan(texts={1: "\\boxed{1}", 4: "\\boxed{4}", 5: "\\boxed{5}"}, final={1, 4, 5})
    scorer = by_step({"s0": 0.9, "\\boxed{1}": 0.5}, default=0.2)
    res = DVTS(ScriptedEngine(plan), scorer, params=DVTSParams(n=2, beam_width=2)).solve(P)[0]
    calls = [texts(c) for c in scorer.calls]
    assert calls[0] == ["s0\n\n", "\\boxed{1}"]
    assert calls[1] == ["s0\n\ns2\n\n", "s0\n\ns3\n\n"]
    assert "\\boxed{1}" not in [c.text for c in res.candidates]


def test_last_iteration_and_lookahead():
    plan = Plan(texts={2: "\\boxed{2}", 3: "\\boxed{3}"}, final={2, 3})
    scorer = by_step({"s0": 0.9, "L0": 0.1, "L1": 0.8})
    res = DVTS(ScriptedEngine(plan), scorer, params=DVTSParams(n=2, beam_width=2, lookahead=1, max_iterations=2)).solve(P)[0]
    calls = [texts(c) for c in scorer.calls]
    assert calls[0] == ["s0\n\nL0\n\n", "s1\n\nL1\n\n"]  # the lookahead picks s1
    assert calls[1] == ["s1\n\n\\boxed{2}", "s1\n\n\\boxed{3}"]
    assert len(res.candidates) == 2


def test_registered_and_budget_checked():
    assert get_strategy("dvts") is DVTS
    with pytest.raises(ValidationError, match=r"`n` must be a multiple of `beam_width` \(4\), got 6; use n = 4, 8, 16"):
        DVTS(ScriptedEngine(Plan()), by_step({})).at_budget(6)
    with pytest.raises(ValidationError, match=r"`n` must be a multiple of `beam_width` \(3\), got 4"):
        DVTSParams(n=4, beam_width=3)
