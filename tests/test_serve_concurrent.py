"""`testtime serve` on an engine that takes concurrent callers (`ConcurrentEngine`: remote servers): groups of
requests are solved at once, up to `max_concurrent_solves`, so a request never waits behind a running search,
and each group's usage is its own."""

from __future__ import annotations

import copy
import threading

from test_serve import SOL, Backend, ask, post, start, wait_for

from testtime.engines import ConcurrentEngine, EngineUsage, OpenAIEngine, ScriptedEngine, TransformersEngine


class ConcurrentBackend(Backend):
    """The scripted backend, declared safe for concurrent callers: each view counts its own usage."""

    def __init__(self) -> None:
        super().__init__()
        engine = self.engine

        class Engine(ScriptedEngine):
            def concurrent_view(self):
                view = copy.copy(self)
                view.usage = EngineUsage()
                return view

        self.engine = Engine(engine.handler)


def test_a_request_is_answered_while_another_group_is_still_solving():
    backend = ConcurrentBackend()
    srv = start(backend, batch_window_ms=1)
    try:
        slow = {}
        t = threading.Thread(target=lambda: slow.setdefault("r", post(srv, {"model": "tt", "messages": ask("wait"), "budget": 3})))
        t.start()
        wait_for(srv, lambda h: h["in_flight"] == 1)
        # On a plain engine this waits for the blocked group (the gate opens only after it returns).
        fast = post(srv, {"model": "tt", "messages": ask(), "budget": 2})
        assert fast.status_code == 200 and fast.json()["choices"][0]["message"]["content"] == SOL["5"]
        assert not slow  # still blocked
        backend.gate.set()
        t.join()
        # Each group counted its own tokens while the other ran: 3 and 2 candidates of its own answers.
        assert slow["r"].json()["usage"]["completion_tokens"] == len(SOL["5"]) * 2 + len(SOL["3"])
        assert fast.json()["usage"]["completion_tokens"] == len(SOL["5"]) + len(SOL["3"])
        # and its own engine calls (a shared counter would add the fast group's call to the slow one's)
        assert [r.json()["testtime"]["usage"]["num_engine_calls"] for r in (slow["r"], fast)] == [1, 1]
        assert srv.server.config.app.state.batcher.num_batches == 2
    finally:
        backend.gate.set()
        srv.stop()


def test_at_most_max_concurrent_solves_groups_run_at_once():
    backend = ConcurrentBackend()
    srv = start(backend, batch_window_ms=1, max_concurrent_solves=1)
    try:
        slow = {}
        t = threading.Thread(target=lambda: slow.setdefault("r", post(srv, {"model": "tt", "messages": ask("wait")})))
        t.start()
        wait_for(srv, lambda h: h["in_flight"] == 1)
        fast = {}
        u = threading.Thread(target=lambda: fast.setdefault("r", post(srv, {"model": "tt", "messages": ask(), "budget": 2})))
        u.start()
        u.join(1.0)
        assert not fast  # the one solving slot is taken
        backend.gate.set()
        t.join()
        u.join()
        assert fast["r"].status_code == 200
    finally:
        backend.gate.set()
        srv.stop()


def test_which_engines_take_concurrent_callers():
    remote = OpenAIEngine("m", base_url="http://127.0.0.1:9/v1")
    view = remote.concurrent_view()
    assert isinstance(remote, ConcurrentEngine) and view.client is remote.client and view.usage is not remote.usage
    view.usage.num_calls += 1
    assert remote.usage.num_calls == 0
    assert not issubclass(TransformersEngine, ConcurrentEngine) and not isinstance(ScriptedEngine(lambda r, p, i: ""), ConcurrentEngine)


def test_a_serialized_scorer_view_counts_only_its_own_calls():
    from testtime.scorers import ScoreRequest, ScriptedScorer
    from testtime.serve._batcher import SerializedScorer

    inner, lock = ScriptedScorer(lambda q, steps: [0.5] * len(steps)), threading.Lock()
    a, b = SerializedScorer(inner, lock), SerializedScorer(inner, lock)
    a.score([ScoreRequest(question="q", candidates=["one", "two"])])
    b.score([ScoreRequest(question="q", candidates=["three"])])
    a.score([ScoreRequest(question="q", candidates=["four"])])
    assert (a.usage.num_calls, b.usage.num_calls, inner.usage.num_calls) == (2, 1, 3)
    assert a.usage.num_tokens + b.usage.num_tokens == inner.usage.num_tokens > 0
