"""`--scorer default` on the real embedded model: the shipped PRM head (one short end-to-end test)."""

from __future__ import annotations

import pytest

from testtime.engines import TransformersEngine
from testtime.scorers import PRMHeadScorer, ScoreRequest, load_scorer
from testtime.tasks import load_task

pytestmark = pytest.mark.e2e


def test_default_scorer_is_the_shipped_head_and_prefers_a_right_solution():
    engine = TransformersEngine("default", seed=0)
    scorer = load_scorer("default", engine=engine)
    assert isinstance(scorer, PRMHeadScorer) and scorer.head.layers == [24]
    p = load_task("arith", split="dev", limit=1)[0]
    right = p.meta["solution"]  # the worked solution, in the prompt's step format
    wrong = right.replace(f"{{{p.answer}}}", f"{{{int(p.answer) + 7}}}")
    (scores,) = scorer.score(ScoreRequest(question=p.question, candidates=[right, wrong, right + "\n\n"], messages=p.chat()))
    assert len(scores[0]) == right.count("\n\n") + 1 and scores[2] == pytest.approx(scores[0], abs=1e-5)
    assert scores[0][-1] > scores[1][-1]
