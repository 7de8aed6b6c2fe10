"""The scheduler: programs merged into one live batch on a tiny random-weight Llama. Each program must get exactly
its own rows and scores, the same candidates as a batch of its own, and leave no trace when cancelled."""

from __future__ import annotations

import pytest
from _tiny import crc_scorer, make_llama, make_tokenizer

from testtime import Request, SamplingParams, TransformersEngine
from testtime.scheduler import Cancelled, Scheduler
from testtime.scorers import ScoreRequest, ScriptedScorer
from testtime.strategies import Policy, PolicyEntry, make_strategy
from testtime.tasks import Problem

PROBLEMS = [Problem(id=str(i), question=q) for i, q in enumerate(["Tom has 5 apples", "What is 6 * 7? Step 1: compute", "hello world", "add the numbers"])]
SAMPLING = SamplingParams(temperature=1.0, max_tokens=40)


@pytest.fixture(scope="module")
def engine():
    tok = make_tokenizer()
    return TransformersEngine(make_llama(tok), tokenizer=tok, seed=0)


def summary(results):
    return [(r.problem_id, [c.text for c in r.candidates], [c.score for c in r.candidates], r.selected, r.answer, r.usage.num_generated_tokens) for r in results]


SPECS = ["greedy", "majority", "bon", "weighted", "beam", "beam:lookahead=1", "dvts", "pf", "spr", "deepconf", "deepconf-online", "adaptive", "beam:max_step_tokens=5"]


@pytest.mark.parametrize("spec", SPECS)
def test_programs_give_the_same_results_as_one_batch(engine, spec):
    """Every strategy, as one program per problem on the scheduler, equals its own batched solve: the same
    candidates, scores, choice, generated and prefilled tokens per problem."""
    batched = make_strategy(spec, engine, crc_scorer(), n=4, sampling=SAMPLING, seed=3).solve_batch(PROBLEMS)
    strategy = make_strategy(spec, engine, crc_scorer(), n=4, sampling=SAMPLING, seed=3)
    scheduler = Scheduler(engine, strategy.scorer)
    assert scheduler.batched
    from testtime.strategies._base import solve_on

    e0 = engine.usage.num_prefill_tokens
    scheduled = solve_on(scheduler, strategy, PROBLEMS)
    prefilled = engine.usage.num_prefill_tokens - e0
    assert summary(scheduled) == summary(batched)
    # Programs count their own prefill exactly; a batch splits its total over problems by prompt size (rounded).
    assert sum(r.usage.num_prefill_tokens for r in scheduled) == prefilled
    assert abs(sum(r.usage.num_prefill_tokens for r in batched) - prefilled) <= len(PROBLEMS)
    assert scheduler.stats.max_programs == len(PROBLEMS)  # all four ran at once
    assert len(scheduler.batch) == 0  # every row left with its program


def test_optimal_dispatches_per_program_and_records_its_choices(engine):
    entries = [PolicyEntry(level=lv, n=4, strategy="beam" if lv == 1 else "weighted", params={"beam_width": 2} if lv == 1 else {}) for lv in (1, 2)]
    policy = Policy(entries=entries, edges=[0.5], num_levels=2, num_probe=2)
    batched = make_strategy("optimal", engine, crc_scorer(), n=4, sampling=SAMPLING, seed=1, policy=policy).solve_batch(PROBLEMS)
    strategy = make_strategy("optimal", engine, crc_scorer(), n=4, sampling=SAMPLING, seed=1, policy=policy)
    scheduled = strategy.solve(PROBLEMS)
    assert summary(scheduled) == summary(batched)
    assert [c["problem_id"] for c in strategy.choices] == [p.id for p in PROBLEMS]


def test_interleaved_programs_get_their_own_rows_and_scores(engine):
    """Two hand-written programs with different prompts, limits and stops share the batch; each sees only its
    rows, and one scorer call serves both with each getting its own scores."""
    scorer = ScriptedScorer(lambda q, steps: [float(len(q))] * len(steps))
    scheduler = Scheduler(engine, scorer)
    seen = {}

    def program(name: str, question: str, n: int, step: int):
        def body(eng, sc):
            batch = eng.start(Request(messages=[{"role": "user", "content": question}]), SamplingParams(n=n, temperature=1.0, max_tokens=30, seed=7))
            texts = [""] * n
            while True:
                outs = batch.advance(step)
                assert len(outs) == len(batch) == n
                texts = [t + o.text for t, o in zip(texts, outs)]
                assert [batch.completion(i).text for i in range(n)] == texts  # its own rows, in its own order
                if all(o.finished for o in outs):
                    break
            scores = sc.score(ScoreRequest(question=question, candidates=texts))
            seen[name] = (texts, scores)
            return texts

        return body

    a = scheduler.submit(program("a", "Tom has 5 apples", 3, 4), rows=3)
    b = scheduler.submit(program("b", "What is 6 * 7? a much longer question here", 2, 7), rows=2)
    scheduler.run()
    assert seen["a"][1] == [[[16.0]] * 3]
    assert seen["b"][1] == [[[float(len("What is 6 * 7? a much longer question here"))]] * 2]
    assert len(scorer.calls) == 1 and len(scorer.calls[0]) == 2  # one merged call
    # Alone, each program samples exactly the same texts (per-row seeded streams).
    for name, q, n, step, h in [("a", "Tom has 5 apples", 3, 4, a), ("b", "What is 6 * 7? a much longer question here", 2, 7, b)]:
        alone = Scheduler(engine, ScriptedScorer(lambda q, steps: [0.0] * len(steps)))
        assert alone.map([program(name + "-alone", q, n, step)])[0] == h.result()


def test_a_program_admitted_while_others_decode_changes_nothing(engine):
    strategy = make_strategy("majority", engine, None, n=4, sampling=SAMPLING, seed=5)
    alone = [strategy.solve_batch([p])[0] for p in PROBLEMS[:2]]
    scheduler = Scheduler(engine, None, step_chunk=3)
    first = scheduler.submit(lambda e, s: make_strategy("majority", e, None, n=4, sampling=SAMPLING, seed=5).solve_batch([PROBLEMS[0]])[0], rows=4)
    for _ in range(4):  # the first program is mid-decode
        scheduler.tick()
    assert 0 < len(scheduler.batch) and not first.done
    second = scheduler.submit(lambda e, s: make_strategy("majority", e, None, n=4, sampling=SAMPLING, seed=5).solve_batch([PROBLEMS[1]])[0], rows=4)
    scheduler.run()
    assert summary([first.result(), second.result()]) == summary(alone)
    assert scheduler.stats.max_programs == 2


def test_cancel_drops_the_rows_at_the_next_step_and_spares_the_others(engine):
    strategy = make_strategy("majority", engine, None, n=4, sampling=SAMPLING, seed=5)
    want = strategy.solve_batch([PROBLEMS[1]])[0]
    scheduler = Scheduler(engine, None, step_chunk=2)
    body = lambda p: lambda e, s: make_strategy("majority", e, None, n=4, sampling=SAMPLING, seed=5).solve_batch([p])[0]  # noqa: E731
    doomed, kept = scheduler.submit(body(PROBLEMS[0]), rows=4), scheduler.submit(body(PROBLEMS[1]), rows=4)
    queued = scheduler.submit(body(PROBLEMS[2]), rows=4)
    scheduler.max_rows = 8  # the third waits in the queue
    for _ in range(3):
        scheduler.tick()
    assert len(scheduler.batch) == 8 and not doomed.done
    doomed.cancel()
    queued.cancel()
    scheduler.tick()
    assert doomed.done and isinstance(doomed.error, Cancelled) and isinstance(queued.error, Cancelled)
    assert len(scheduler.batch) == 4  # only the kept program's rows
    scheduler.run()
    assert summary([kept.result()]) == summary([want])


def test_a_full_batch_queues_programs_until_rows_free_up(engine):
    scheduler = Scheduler(engine, None, max_rows=4)
    body = lambda p: lambda e, s: make_strategy("majority", e, None, n=4, sampling=SAMPLING, seed=2).solve_batch([p])[0]  # noqa: E731
    results = scheduler.map([body(p) for p in PROBLEMS[:3]], rows=4)
    assert scheduler.stats.max_programs == 1 and scheduler.stats.num_admissions == 3
    assert summary(results) == summary(make_strategy("majority", engine, None, n=4, sampling=SAMPLING, seed=2).solve_batch(PROBLEMS[:3]))


def test_a_failing_program_gets_its_error_and_the_others_their_answers(engine):
    scheduler = Scheduler(engine, None)
    long = Problem(id="long", question="apples " * 3000)  # past the tiny model's context
    body = lambda p: lambda e, s: make_strategy("majority", e, None, n=2, sampling=SAMPLING, seed=2).solve_batch([p])[0]  # noqa: E731
    bad, good = scheduler.submit(body(long), rows=2), scheduler.submit(body(PROBLEMS[0]), rows=2)
    scheduler.run()
    assert "context" in str(bad.error) and good.result().candidates


def test_interactive_programs_decode_first(engine):
    """With `interactive_rows=1` a one-row program decodes alone while a wider one waits: it finishes in as many
    decode steps as its tokens, not interleaved with the search's."""
    scheduler = Scheduler(engine, None, interactive_rows=1, step_chunk=4)
    wide = scheduler.submit(lambda e, s: make_strategy("majority", e, None, n=8, sampling=SAMPLING, seed=2).solve_batch([PROBLEMS[0]])[0], rows=8)
    for _ in range(2):
        scheduler.tick()
    steps_before = scheduler.stats.num_steps
    one = scheduler.submit(lambda e, s: make_strategy("greedy", e, None, sampling=SAMPLING).solve_batch([PROBLEMS[1]])[0], rows=1)
    while not one.done:
        scheduler.tick()
    assert scheduler.stats.num_steps - steps_before <= one.result().candidates[0].num_tokens + 4
    scheduler.run()
    assert wide.result().candidates


# -- `testtime serve` on the scheduler (the in-process engine) -------------------------------------------------


def _job(loop, q: str, *, strategy="majority", budget=2, seed=None, max_tokens=30, ignore_eos=False):
    from testtime.serve._batcher import Job

    problem = Problem(id=f"req-{q}-{seed}", question=q, messages=[{"role": "user", "content": q}])
    sampling = SamplingParams(temperature=1.0, max_tokens=max_tokens, seed=seed, ignore_eos=ignore_eos)
    return Job(problem=problem, strategy=strategy, budget=budget, sampling=sampling, future=loop.create_future(), loop=loop)


def test_serve_runs_every_request_as_a_program_in_one_batch(engine):
    """Concurrent requests with one seed (as evaluation harnesses send) run together, and each gets the
    candidates it gets alone; a greedy request sent while a wider one decodes finishes first."""
    import asyncio

    from testtime.serve._batcher import Batcher

    batcher = Batcher(engine, crc_scorer(), window_s=0.0)

    async def scenario():
        loop = asyncio.get_running_loop()
        alone = [await batcher.submit(_job(loop, q, seed=1234)) for q in ("Tom has 5 apples", "hello world")]
        together = await asyncio.gather(*(batcher.submit(_job(loop, q, seed=1234)) for q in ("Tom has 5 apples", "hello world")))
        wide = batcher.submit(_job(loop, "add the numbers", strategy="beam", budget=8, max_tokens=200, ignore_eos=True))
        while batcher.scheduler is None or not batcher.scheduler.has_work():
            await asyncio.sleep(0.001)
        greedy = await batcher.submit(_job(loop, "hello world", strategy="greedy", budget=1, max_tokens=20))
        assert not wide.done()  # the greedy request did not wait for the search
        await wide
        return alone, together, greedy

    alone, together, greedy = asyncio.run(scenario())
    batcher.close()
    assert [[c.text for c in r.candidates] for r in together] == [[c.text for c in r.candidates] for r in alone]
    assert batcher.scheduler.batched and batcher.scheduler.stats.max_programs >= 2
    assert greedy.candidates[0].num_tokens <= 20


def test_a_client_that_leaves_mid_generation_has_its_rows_dropped(engine):
    import asyncio

    from testtime.serve._batcher import Batcher

    batcher = Batcher(engine, None, window_s=0.0)

    async def scenario():
        loop = asyncio.get_running_loop()
        job = _job(loop, "Tom has 5 apples", budget=4, max_tokens=450, ignore_eos=True)
        fut = batcher.submit(job)
        while batcher.scheduler is None or batcher.scheduler.batch is None or len(batcher.scheduler.batch) == 0:
            await asyncio.sleep(0.001)
        generated = engine.usage.num_generated_tokens
        fut.cancel()  # what the app does when the client disconnects
        while batcher.scheduler.has_work():
            await asyncio.sleep(0.005)
        return generated

    before = engine.usage.num_generated_tokens
    asyncio.run(scenario())
    batcher.close()
    assert len(batcher.scheduler.batch) == 0
    assert engine.usage.num_generated_tokens - before < 4 * 450  # stopped before the rows ran to their 450 tokens
