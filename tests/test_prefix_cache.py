"""Automatic prefix caching: a prompt computes only what follows its longest cached prefix (whole blocks), with
the keys and values of a whole pass, honest token accounting, and LRU eviction that never strands a block."""

from __future__ import annotations

import pytest
import torch
from _tiny import make_llama, make_tokenizer

from testtime import Request, SamplingParams, TransformersEngine, ValidationError
from testtime.engines._prefix_cache import PrefixCache
from testtime.engines._sessions import PendingPrefill
from testtime.scheduler import Scheduler

SYSTEM = "Solve the problem step by step. " * 4
SHOTS = [
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "content": "2 + 3 = 5. The answer is 5."},
    {"role": "user", "content": "What is 7 * 6?"},
    {"role": "assistant", "content": "7 * 6 = 42. The answer is 42."},
]


def ask(q: str) -> Request:
    return Request(messages=[{"role": "system", "content": SYSTEM}, *SHOTS, {"role": "user", "content": q}])


GREEDY = SamplingParams(temperature=0.0, max_tokens=10)


BLOCK = 16  # the tiny model's prompts are ~100-200 tokens; the engine's default block is 128


@pytest.fixture(scope="module")
def engines():
    """(with a prefix cache of 16-token blocks, without one) over one model."""
    tok = make_tokenizer()
    model = make_llama(tok)
    with_cache = TransformersEngine(model, tokenizer=tok, seed=0)
    with_cache.prefix_cache = PrefixCache(4096, block_tokens=BLOCK)
    return with_cache, TransformersEngine(model, tokenizer=tok, seed=0, prefix_cache_tokens=0)


@pytest.fixture
def cached(engines):
    eng = engines[0]
    eng.prefix_cache.clear()
    return eng


def cache_of(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values of a one-row batch's live columns."""
    c = batch.session.cache
    return c.k[:, :1, :, : c.col], c.v[:, :1, :, : c.col]


# -- the cache on its own -------------------------------------------------------------------------------------
def kv(tokens: list[int], L: int = 2, H: int = 1, D: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values (L, H, T, D) that encode each token and its position, so a wrong slice or order shows."""
    t = torch.tensor(tokens, dtype=torch.float32)
    pos = torch.arange(len(tokens), dtype=torch.float32)
    k = (t * 1000 + pos)[None, None, :, None].expand(L, H, -1, D).clone()
    return k, -k


def test_lookup_returns_the_longest_cached_run_of_whole_blocks_in_order():
    cache = PrefixCache(64, block_tokens=4)
    a = list(range(10))  # blocks [0..3], [4..7]; the last 2 tokens are not a whole block
    cache.insert(a, *kv(a))
    assert cache.num_tokens == 8
    b = list(range(8)) + [99, 98, 97, 96]
    m, k, v = cache.lookup(b)
    assert m == 8
    want_k, want_v = kv(list(range(8)))
    assert torch.equal(k[:, 0], want_k) and torch.equal(v[:, 0], want_v)
    assert cache.lookup(list(range(7)))[0] == 4  # 7 tokens hold one whole cached block
    assert cache.lookup([5, 1, 2, 3, 4])[0] == 0


def test_a_block_matches_only_after_the_same_prefix():
    """Blocks are keyed by their parent: the same second block after a different first block is not a hit."""
    cache = PrefixCache(64, block_tokens=4)
    a = [1, 2, 3, 4, 5, 6, 7, 8]
    cache.insert(a, *kv(a))
    assert cache.num_cached([9, 9, 9, 9, 5, 6, 7, 8]) == 0
    assert cache.num_cached([1, 2, 3, 4, 5, 6, 7, 0]) == 4
    assert cache.num_cached(a) == 8


def test_eviction_is_least_recently_used_and_never_strands_a_block():
    cache = PrefixCache(16, block_tokens=4)  # room for 4 blocks
    a, b = [1] * 8, [2] * 8
    cache.insert(a, *kv(a))
    cache.insert(b, *kv(b))
    assert cache.num_tokens == 16
    cache.lookup(a)  # a is now the most recently used
    assert cache.num_cached(b) == 8  # counting is not a use
    c = [3] * 4
    cache.insert(c, *kv(c))
    # b's second block was the least recently used leaf: only it goes; a stays whole.
    assert (cache.num_cached(a), cache.num_cached(b), cache.num_cached(c), cache.num_tokens) == (8, 4, 4, 16)
    d = [4] * 12  # longer than what is left: b's first block and a's blocks go, leaves first
    cache.insert(d, *kv(d))
    assert cache.num_tokens == 16 and cache.num_cached(d) == 12 and cache.num_cached(a) == 0
    m, k, _ = cache.lookup(d)
    assert torch.equal(k[:, 0], kv(d)[0])


def test_a_prompt_longer_than_the_cache_keeps_its_first_blocks():
    cache = PrefixCache(8, block_tokens=4)
    a = list(range(20))
    cache.insert(a, *kv(a))
    assert cache.num_tokens == 8 and cache.num_cached(a) == 8


@pytest.mark.parametrize("bad", [0, 3, -1, 2.5, True])
def test_a_cache_smaller_than_a_block_is_refused(bad):
    with pytest.raises(ValidationError, match="max_tokens"):
        PrefixCache(bad, block_tokens=4)


# -- the engine -------------------------------------------------------------------------------------------------
def test_a_prompt_computes_only_what_follows_its_cached_prefix_with_the_keys_of_a_cold_prefill(engines, cached):
    plain = engines[1]
    first, second = ask("What is 12 + 30?"), ask("Tom has 5 apples and buys 9 more. How many now?")
    cold = cached.start(second, GREEDY)  # computed with nothing cached...
    cold_k, cold_v = (t.clone() for t in cache_of(cold))
    cached.prefix_cache.clear()
    warm = cached.start(first, GREEDY)  # ...and after another prompt that starts the same way
    usage0 = cached.usage.copy()
    batch = cached.start()
    encoded = batch.encode([second], [GREEDY])
    expect = cached.prefix_cache.num_cached(encoded[0][:-1])
    assert expect >= 3 * BLOCK and expect % BLOCK == 0
    batch.add([second], [GREEDY], encoded=encoded)
    prompt = len(encoded[0]) - 1  # the last token is fed by the first decode step
    delta = cached.usage - usage0
    assert (delta.num_prefill_tokens, delta.num_cached_prompt_tokens) == (prompt - expect, expect)
    assert batch.rows[0].num_cached_tokens == expect and warm.rows[0].num_cached_tokens == 0
    k, v = cache_of(batch)
    assert torch.equal(k, cold_k) and torch.equal(v, cold_v)  # bit for bit: the same grid of blocks
    ref = plain.start(second, GREEDY)  # one pass, no cache: the same to rounding
    ref_k, ref_v = cache_of(ref)
    assert torch.allclose(k, ref_k, rtol=1e-4, atol=1e-4) and torch.allclose(v, ref_v, rtol=1e-4, atol=1e-4)
    assert [o.text for o in batch.advance(10)] == [o.text for o in cold.advance(10)] == [o.text for o in ref.advance(10)]


def test_the_same_prompt_again_computes_only_its_last_partial_block(cached):
    req = ask("What is 12 + 30?")
    cached.start(req, GREEDY)
    before = cached.usage.copy()
    batch = cached.start(req, GREEDY)
    prompt = batch.rows[0].num_prompt_tokens - 1
    block = cached.prefix_cache.block_tokens
    delta = cached.usage - before
    assert delta.num_cached_prompt_tokens == prompt // block * block
    assert delta.num_prefill_tokens == prompt % block


def test_prompts_of_one_call_reuse_each_others_prefix(cached):
    """Two prompts that start alike, added together: the second waits for the first's blocks instead of sharing
    its forward, so the shared prefix is computed once."""
    reqs = [ask("What is 12 + 30?"), ask("What is 8 * 9?"), Request(prompt="hello world")]
    batch = cached.start()
    encoded = batch.encode(reqs, [GREEDY] * 3)
    batch.add(reqs, [GREEDY] * 3, encoded=encoded)
    cached_per_request = [batch.rows[i].num_cached_tokens for i in range(3)]
    assert cached_per_request[0] == 0 and cached_per_request[1] >= 32 and cached_per_request[2] == 0
    assert cached.usage.num_cached_prompt_tokens >= cached_per_request[1]


def test_a_cached_prompt_prefilled_in_slices_equals_one_call(cached):
    req = ask("Sam reads 14 pages a day for 3 days. How many pages?")
    whole = cached.start(req, GREEDY)
    want = [t.clone() for t in cache_of(whole)]
    cached.prefix_cache.clear()
    cached.start(ask("What is 12 + 30?"), GREEDY)
    batch = cached.start()
    encoded = batch.encode([req], [GREEDY])
    pending = batch.start_prefill(encoded)
    steps = 0
    while not pending.done:
        pending.step(3)  # less than a block: one block per step
        steps += 1
    assert pending.num_cached[0] >= 3 * BLOCK
    assert steps == -(-(len(encoded[0]) - 1 - pending.num_cached[0]) // BLOCK)
    batch.add([req], [GREEDY], encoded=encoded, prefilled=pending)
    k, v = cache_of(batch)
    assert torch.equal(k, want[0]) and torch.equal(v, want[1])
    assert [o.text for o in batch.advance(10)] == [o.text for o in whole.advance(10)]


def test_the_cache_stays_within_its_budget(engines):
    tok, model = engines[0].tokenizer, engines[0].model
    eng = TransformersEngine(model, tokenizer=tok, seed=0)
    eng.prefix_cache = PrefixCache(2 * BLOCK, block_tokens=BLOCK)
    for q in ("What is 12 + 30?", "What is 8 * 9?", "Name a color."):
        eng.start(ask(q), GREEDY).advance(2)
        assert eng.prefix_cache.num_tokens <= 2 * BLOCK
    assert eng.prefix_cache.num_tokens == 2 * BLOCK


@pytest.mark.parametrize("bad", [-1, 5, 127, True, 1.5])
def test_a_bad_prefix_cache_size_is_refused(engines, bad):
    with pytest.raises(ValidationError, match="prefix_cache_tokens"):
        TransformersEngine(engines[0].model, tokenizer=engines[0].tokenizer, prefix_cache_tokens=bad)


# -- the scheduler --------------------------------------------------------------------------------------------
def program(question: str, n: int = 2):
    def body(eng, _scorer):
        batch = eng.start(ask(question), SamplingParams(n=n, temperature=1.0, max_tokens=6, seed=5, ignore_eos=True))
        batch.advance(6)
        return eng.usage.copy(), [batch.completion(i).text for i in range(n)]

    return body


def test_each_program_is_charged_the_prompt_tokens_computed_for_it(engines, cached):
    plain = engines[1]
    first, second = Scheduler(cached).map([program("What is 12 + 30?")]), Scheduler(cached).map([program("What is 8 * 9?")])
    assert first[0][0].num_cached_prompt_tokens == 0
    encoded = cached.start().encode([ask("What is 8 * 9?")], [GREEDY])[0]
    assert second[0][0].num_cached_prompt_tokens >= 32
    assert second[0][0].num_prefill_tokens + second[0][0].num_cached_prompt_tokens == len(encoded) - 1
    # Same seed, same samples as without the cache.
    assert second[0][1] == Scheduler(plain).map([program("What is 8 * 9?")])[0][1]


def test_a_tick_prices_admissions_by_what_they_compute(cached, monkeypatch):
    """Three prompts whose cached prefixes leave a few tokens each: a per-tick budget that holds their uncached
    parts but not one whole prompt admits all three in one tick."""
    Scheduler(cached).map([program("What is 12 + 30?")])  # caches the shared prefix
    questions = ["What is 8 * 9?", "What is 3 + 4?", "What is 9 - 2?"]
    encoded = cached.start().encode([ask(q) for q in questions], [GREEDY] * 3)
    uncached = [len(ids) - cached.prefix_cache.num_cached(ids[:-1]) for ids in encoded]
    budget = sum(uncached) + 3
    assert budget < min(len(ids) for ids in encoded)
    scheduler = Scheduler(cached, prefill_tokens=budget, step_chunk=2)
    wholes: list[int] = []
    pstep = PendingPrefill.step
    monkeypatch.setattr(PendingPrefill, "step", lambda self, max_tokens=None: wholes.append(len(self.prompts)) or pstep(self, max_tokens))
    runner = scheduler.submit(program("Name a color please."), rows=2)
    while len(scheduler.batch) == 0:
        scheduler.tick()
    wholes.clear()
    others = [scheduler.submit(program(q), rows=2) for q in questions]
    scheduler.tick()
    assert wholes == [3]  # one prefill of all three, in the first tick
    scheduler.run()
    assert runner.result() and all(h.result() for h in others)
