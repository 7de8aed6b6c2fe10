"""TransformersEngine on tiny random-weight models: parity with transformers, exact continuation, live-batch
surgery, stops, seeds and accounting.

`TESTTIME_TEST_DEVICE=cuda pytest tests/test_engine.py` runs the same checks on a GPU (TF32 off, so greedy parity
stays exact).
"""

from __future__ import annotations

import os
from collections import deque

import pytest
import torch
from _tiny import TRIMMING_BOS, make_gpt2, make_llama, make_tokenizer

from testtime import Request, SamplingParams, TransformersEngine, ValidationError

DEVICE = os.environ.get("TESTTIME_TEST_DEVICE", "cpu")
if DEVICE == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

GREEDY = SamplingParams(temperature=0, max_tokens=24)
MSGS = [
    [{"role": "user", "content": "Tom has 5 apples"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 6 * 7? Step 1: compute"}],
    [{"role": "user", "content": "hello"}],
]


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def engine(tok):
    return TransformersEngine(make_llama(tok), tokenizer=tok, seed=0, device=DEVICE)


def hf_greedy(model, ids: list[int], n: int) -> list[int]:
    out = model.generate(torch.tensor([ids], device=model.device), max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[0, len(ids) :].tolist()


@pytest.mark.parametrize(
    "make, kwargs",
    [
        pytest.param(make_llama, {}, id="llama-native"),
        pytest.param(make_llama, {"model_type": "qwen2"}, id="qwen2-native-bias"),
        pytest.param(make_llama, {"model_type": "qwen3", "head_dim": 16}, id="qwen3-native-qknorm"),
        pytest.param(make_llama, {"native": False}, id="llama-hf-forward"),
        pytest.param(make_gpt2, {}, id="gpt2-hf-forward"),
    ],
)
def test_greedy_matches_transformers_generate(tok, make, kwargs):
    native = kwargs.pop("native", None)
    model = make(tok, **kwargs)
    eng = TransformersEngine(model, tokenizer=tok, native=native, device=DEVICE)
    assert (eng.runner is not None) == (make is make_llama and native is not False)
    reqs = [Request(messages=m) for m in MSGS]
    outs = eng.generate(reqs, SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))
    for req, out in zip(reqs, outs):
        assert out.completions[0].token_ids == hf_greedy(model, eng.encode(req), 20)
        assert out.completions[0].finish_reason == "length"
        assert out.num_prompt_tokens == len(eng.encode(req))


def test_native_logits_match_transformers(tok, engine):
    ids = engine.encode(Request(messages=MSGS[1]))
    ref = engine.model(torch.tensor([ids], device=engine.device)).logits[0, -1]
    ours = engine.next_token_logprobs([ids])[0]
    assert torch.allclose(torch.log_softmax(ref, -1), ours, atol=1e-4)


def test_continuation_from_token_ids_is_exact(engine):
    req = Request(messages=MSGS[0])
    full = engine.generate(req, SamplingParams(temperature=0, max_tokens=30, ignore_eos=True))[0].completions[0]
    head = full.token_ids[:12]
    cont = engine.generate(
        Request(messages=MSGS[0], partial="<ignored when ids are given>", partial_token_ids=head),
        SamplingParams(temperature=0, max_tokens=18, ignore_eos=True),
    )[0].completions[0]
    assert head + cont.token_ids == full.token_ids


def test_partial_text_is_encoded_apart_from_the_prompt(engine, tok):
    """Generated tokens never merge with the prompt's last token, so neither may a partial answer's
    (tests/test_e2e.py shows the real tokenizer fusing "\n" + "\n" when encoded jointly)."""
    partial = "\n## Step 1: add 5 and 7.\n\n"
    ids = engine.encode(Request(messages=MSGS[0], partial=partial))
    prompt_ids = engine.encode(Request(messages=MSGS[0]))
    assert ids == prompt_ids + tok(partial, add_special_tokens=False).input_ids
    # And continuing that text continues the same token stream as an uninterrupted generation after it.
    p = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    by_text = engine.generate(Request(messages=MSGS[0], partial=partial), p)[0].completions[0]
    by_ids = engine.generate(Request(messages=MSGS[0], partial_token_ids=tok(partial, add_special_tokens=False).input_ids), p)
    assert by_text.token_ids == by_ids[0].completions[0].token_ids


def test_partial_keeps_trailing_newlines_and_single_bos_with_trimming_template():
    tok = make_tokenizer(template=TRIMMING_BOS, add_bos=True)
    eng = TransformersEngine(make_llama(tok), tokenizer=tok, device=DEVICE)
    partial = "## Step 1: Compute\n\n"
    ids = eng.encode(Request(messages=MSGS[0], partial=partial))
    partial_ids = tok(partial, add_special_tokens=False).input_ids
    # Trap 1: the template would trim "\n\n" off a final assistant message; our ids keep it.
    assert ids[-len(partial_ids) :] == partial_ids
    assert tok.decode(ids).endswith("<|im_start|>assistant\n## Step 1: Compute\n\n")
    naive = tok.apply_chat_template([*MSGS[0], {"role": "assistant", "content": partial}], tokenize=False, continue_final_message=True)
    assert not naive.endswith("\n\n")  # ...which is what the naive route would have fed the model
    # Trap 2: BOS is written by the template and must not be added again by the tokenizer.
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    assert tok(tok.apply_chat_template(MSGS[0], tokenize=False, add_generation_prompt=True)).input_ids.count(tok.bos_token_id) == 2


def test_raw_prompt_gets_bos_when_tokenizer_adds_it():
    tok = make_tokenizer(add_bos=True)
    eng = TransformersEngine(make_llama(tok), tokenizer=tok, device=DEVICE)
    ids = eng.encode(Request(prompt="Tom has 5 apples"))
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1


def test_seeds_reproduce_and_completions_differ(engine):
    req = Request(messages=MSGS[0])
    p = SamplingParams(n=4, temperature=1.0, max_tokens=16, seed=7, ignore_eos=True)
    a = [c.token_ids for c in engine.generate(req, p)[0].completions]
    b = [c.token_ids for c in engine.generate(req, p)[0].completions]
    c = [c.token_ids for c in engine.generate(req, SamplingParams(n=4, temperature=1.0, max_tokens=16, seed=8, ignore_eos=True))[0].completions]
    assert a == b
    assert a != c
    assert len({tuple(t) for t in a}) == 4
    # A seeded request samples the same tokens whatever else shares its batch.
    mixed = engine.generate([Request(messages=MSGS[1]), req, Request(messages=MSGS[2])], [GREEDY, p, GREEDY])
    assert [c.token_ids for c in mixed[1].completions] == a


def test_n_forks_prefill_once(engine):
    req = Request(messages=MSGS[1])
    before = engine.usage.copy()
    out = engine.generate(req, SamplingParams(n=5, temperature=1.0, max_tokens=8, seed=1, ignore_eos=True))[0]
    used = engine.usage - before
    assert used.num_prefill_tokens == out.num_prompt_tokens - 1  # the last prompt token is fed by the first decode
    assert used.num_generated_tokens == 5 * 8
    assert [c.index for c in out.completions] == [0, 1, 2, 3, 4]


def test_stop_strings(engine):
    req = Request(messages=MSGS[0])
    full = engine.generate(req, SamplingParams(temperature=0, max_tokens=30, ignore_eos=True))[0].completions[0]
    stop = full.text[10:13]
    first = full.text.find(stop)
    out = engine.generate(req, SamplingParams(temperature=0, max_tokens=30, stop=[stop], ignore_eos=True))[0].completions[0]
    assert out.finish_reason == "stop" and out.stop_reason == stop
    assert out.text == full.text[:first]
    kept = engine.generate(req, SamplingParams(temperature=0, max_tokens=30, stop=[stop], include_stop_str_in_output=True, ignore_eos=True))
    assert kept[0].completions[0].text == full.text[: first + len(stop)]
    assert full.token_ids[: len(out.token_ids)] == out.token_ids and len(out.token_ids) < 30


def test_eos_ends_without_the_eos_token(tok):
    eng = TransformersEngine(make_llama(tok), tokenizer=tok, device=DEVICE)
    req = Request(messages=MSGS[0])
    full = eng.generate(req, SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))[0].completions[0]
    eng.eos_ids = {full.token_ids[6]}
    out = eng.generate(req, SamplingParams(temperature=0, max_tokens=20))[0].completions[0]
    k = full.token_ids.index(full.token_ids[6])
    assert out.finish_reason == "eos" and out.token_ids == full.token_ids[:k]


def test_many_requests_continuous_batching_matches_one_by_one(tok):
    eng = TransformersEngine(make_llama(tok), tokenizer=tok, max_batch_size=3, device=DEVICE)
    reqs = [Request(messages=[{"role": "user", "content": "Tom " * (1 + i % 5) + str(i)}]) for i in range(9)]
    params = [SamplingParams(temperature=0, max_tokens=5 + 7 * (i % 3), ignore_eos=True) for i in range(9)]
    batched = eng.generate(reqs, params)
    for req, p, out in zip(reqs, params, batched):
        alone = eng.generate(req, p)[0].completions[0]
        assert out.completions[0].token_ids == alone.token_ids
        assert out.completions[0].num_tokens == p.max_tokens


@pytest.mark.parametrize("seeded", [True, False])
def test_requests_split_across_rows_sample_as_whole_ones(tok, seeded):
    """A request bigger than the free rows starts in pieces (first sample indices 0, 3, ...); each sample is the
    one it is when the request runs whole, and an unseeded request's pieces share one engine seed."""
    model = make_llama(tok)
    reqs = [Request(messages=m) for m in MSGS[:2]]
    params = [SamplingParams(n=7, temperature=1.0, max_tokens=4 + 5 * i, ignore_eos=True, seed=(10 + i) if seeded else None) for i in range(2)]
    whole = TransformersEngine(model, tokenizer=tok, max_batch_size=64, device=DEVICE, seed=3).generate(reqs, params)
    split = TransformersEngine(model, tokenizer=tok, max_batch_size=4, device=DEVICE, seed=3).generate(reqs, params)
    for w, s in zip(whole, split):
        assert [c.index for c in s.completions] == list(range(7))
        assert [c.token_ids for c in s.completions] == [c.token_ids for c in w.completions]
    assert len({tuple(c.token_ids) for c in whole[0].completions}) > 1  # the samples differ: indices matter


def test_admissions_split_a_request_into_pieces_of_at_least_a_quarter_batch():
    from testtime.engines.transformers_engine import _admissions

    sizes = [64, 64, 3]
    queue, admitted = deque([0, 1, 2]), [0, 0, 0]
    assert _admissions(queue, sizes, admitted, rows=0, max_rows=64) == [(0, 0, 64)]  # an empty batch: whole
    assert _admissions(queue, sizes, admitted, rows=50, max_rows=64) == []  # 14 free < 16: wait for more
    assert _admissions(queue, sizes, admitted, rows=40, max_rows=64) == [(1, 0, 24)]  # 24 free: a piece
    assert list(queue) == [1, 2] and admitted == [64, 24, 0]
    # The rest of request 1 (40) and then request 2 whole, where they fit.
    assert _admissions(queue, sizes, admitted, rows=10, max_rows=64) == [(1, 24, 40), (2, 0, 3)]
    assert not queue
    # A batch emptied of rows takes a piece of any size; a full one takes nothing.
    queue, admitted = deque([0]), [0]
    assert _admissions(queue, [100], admitted, rows=0, max_rows=8) == [(0, 0, 8)]
    assert _admissions(queue, [100], admitted, rows=8, max_rows=8) == []
    assert _admissions(queue, [100], admitted, rows=7, max_rows=8) == []  # 1 free row: a piece of 1 < 2 waits
    assert _admissions(queue, [100], admitted, rows=6, max_rows=8) == [(0, 8, 2)]


def test_live_batch_advance_limit_and_boundary(engine):
    batch = engine.start([Request(messages=m) for m in MSGS], SamplingParams(temperature=0, max_tokens=40, ignore_eos=True))
    steps = batch.advance(5)
    assert [s.num_tokens for s in steps] == [5, 5, 5] and {s.reason for s in steps} == {"limit"}
    full = [engine.generate(Request(messages=m), SamplingParams(temperature=0, max_tokens=40, ignore_eos=True))[0].completions[0] for m in MSGS]
    stop = full[0].text[7:9]
    steps = batch.advance(stop=[stop])
    assert steps[0].reason == "boundary" and stop in batch.completion(0).text[len(full[0].text[:5]) - 2 :]
    # Each row's tokens so far are a prefix of its uninterrupted greedy generation.
    for r in range(3):
        ids = batch.completion(r).token_ids
        assert ids == full[r].token_ids[: len(ids)]


def test_reorder_decodes_like_fresh_prefill(engine):
    """Dropping, duplicating and permuting rows must not change what they generate next."""
    p = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)
    reqs = [Request(messages=m) for m in MSGS]
    batch = engine.start(reqs, p)
    batch.advance(6)
    before = engine.usage.copy()
    batch.reorder([2, 0, 0])
    assert batch.request_indices == [2, 0, 0]
    batch.advance(10)
    assert (engine.usage - before).num_prefill_tokens == 0  # nothing re-prefilled
    for row, r in enumerate([2, 0, 0]):
        head = batch.completion(row).token_ids[:6]
        fresh = engine.generate(Request(messages=MSGS[r], partial_token_ids=head), SamplingParams(temperature=0, max_tokens=10, ignore_eos=True))
        assert batch.completion(row).token_ids == head + fresh[0].completions[0].token_ids


def test_forked_rows_sample_different_continuations(engine):
    batch = engine.start(Request(messages=MSGS[0]), SamplingParams(temperature=1.0, max_tokens=40, seed=5, ignore_eos=True))
    batch.advance(4)
    batch.reorder([0, 0, 0, 0])
    batch.advance(8)
    heads = {tuple(batch.completion(r).token_ids[:4]) for r in range(4)}
    tails = {tuple(batch.completion(r).token_ids[4:]) for r in range(4)}
    assert len(heads) == 1 and len(tails) == 4


def test_admitting_rows_into_a_running_batch(engine):
    p = SamplingParams(temperature=0, max_tokens=30, ignore_eos=True)
    batch = engine.start(Request(messages=MSGS[2]), p)  # short prompt first: the longer one needs room on the left
    batch.advance(3)
    batch.add(Request(messages=MSGS[1]), p)
    batch.advance(12)
    assert batch.request_indices == [0, 1]
    for row, m in enumerate([MSGS[2], MSGS[1]]):
        ref = engine.generate(Request(messages=m), p)[0].completions[0].token_ids
        got = batch.completion(row).token_ids
        assert got == ref[: len(got)] and len(got) == (15 if row == 0 else 12)


def test_cache_compaction_keeps_outputs(engine):
    p = SamplingParams(temperature=0, max_tokens=60, ignore_eos=True)
    batch = engine.start([Request(messages=m) for m in MSGS], p)
    batch.advance(4)
    batch.reorder([1])  # the kept row has left padding: holes to squeeze out
    cache = batch.session.cache
    with torch.inference_mode():
        cache.compact()
    assert cache.hole_fraction() == 0.0
    batch.advance(10)
    ref = engine.generate(Request(messages=MSGS[1]), p)[0].completions[0].token_ids
    assert batch.completion(0).token_ids == ref[:14]


def test_finished_rows_stay_finished(engine):
    batch = engine.start([Request(messages=m) for m in MSGS[:2]], [SamplingParams(temperature=0, max_tokens=3), SamplingParams(temperature=0, max_tokens=9, ignore_eos=True)])
    steps = batch.advance()
    assert steps[1].reason == "length" and steps[1].num_tokens == 9
    again = batch.advance()
    assert [s.num_tokens for s in again] == [0, 0] and again[1].reason == "length"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param({"top_p": 1.5}, r"`top_p` must be in \(0, 1\], got 1.5", id="top_p"),
        pytest.param({"temperature": -1}, r"`temperature` must be >= 0", id="temperature"),
        pytest.param({"n": 0}, r"`n` must be an integer >= 1, got 0", id="n"),
        pytest.param({"max_tokens": 0}, r"`max_tokens` must be an integer >= 1", id="max_tokens"),
        pytest.param({"stop": [""]}, r"`stop` must be a list of non-empty strings", id="stop"),
        pytest.param({"top_k": -2}, r"`top_k` must be an integer >= 0", id="top_k"),
    ],
)
def test_bad_sampling_params(kwargs, match):
    with pytest.raises(ValidationError, match=match) as info:
        SamplingParams(**kwargs)
    assert info.value.parameter == next(iter(kwargs))


def test_bad_requests(engine):
    with pytest.raises(ValidationError, match="exactly one of `messages` and `prompt`"):
        Request(messages=MSGS[0], prompt="x")
    with pytest.raises(ValidationError, match="request 1: prompt .* exceeds the model's context of 512"):
        engine.generate([Request(messages=MSGS[0]), Request(prompt="Tom " * 100)], SamplingParams(max_tokens=400))
    with pytest.raises(ValidationError, match="got 2 requests but 3 SamplingParams"):
        engine.generate([Request(prompt="a"), Request(prompt="b")], [GREEDY] * 3)
    batch = engine.start(Request(prompt="a"), GREEDY)
    with pytest.raises(ValidationError, match=r"reorder got row 4, but the batch has rows 0..0"):
        batch.reorder([4])


def test_last_hidden_states_match_a_fresh_forward(engine):
    """The hidden state a live batch keeps per row is the one that produced the row's last token."""
    batch = engine.start([Request(messages=m) for m in MSGS[:2]], SamplingParams(temperature=1.0, max_tokens=30, seed=2, ignore_eos=True))
    batch.advance(5)
    batch.reorder([1, 0])
    batch.advance(3)
    hidden = batch.last_hidden_states()
    for row, m in enumerate([MSGS[1], MSGS[0]]):
        ids = engine.encode(Request(messages=m)) + batch.completion(row).token_ids[:-1]
        assert torch.allclose(hidden[row], engine.hidden_states([ids])[0][-1], atol=1e-4)


def test_tracked_layers_are_read_at_the_last_fed_visible_token(engine):
    """Tracked states are transformers' `hidden_states[i]` at each row's last fed token that shows text (where
    step heads read), through reorders; untracked or out-of-range layers are refused by name."""
    from testtime.engines._detok import IncrementalDetokenizer

    batch = engine.start([Request(messages=m) for m in MSGS[:2]], SamplingParams(temperature=1.0, max_tokens=30, seed=5, ignore_eos=True))
    batch.track_hidden_states([1, -1])
    batch.advance(4)
    batch.reorder([1, 0, 0])
    batch.advance(5)
    got = batch.last_hidden_states([1, -1])
    C = engine.model.config.hidden_size
    assert got.shape == (3, 2 * C)
    skipped = 0
    for row, m in enumerate([MSGS[1], MSGS[0], MSGS[0]]):
        prompt = engine.encode(Request(messages=m))
        gen = batch.completion(row).token_ids
        detok = IncrementalDetokenizer(engine.tokenizer, prompt)
        shows = [detok.push(t).strip() != "" for t in gen[:-1]]  # fed tokens: all but the newest
        last = max((j for j, v in enumerate(shows) if v), default=None)
        skipped += last != len(shows) - 1
        ids = prompt + gen[: last + 1] if last is not None else prompt
        with torch.no_grad():
            hs = engine.model(input_ids=torch.tensor([ids], device=engine.device), output_hidden_states=True).hidden_states
        assert torch.allclose(got[row, :C].float(), hs[1][0, -1].float(), rtol=1e-4, atol=1e-3)
        assert torch.allclose(got[row, C:].float(), hs[-1][0, -1].float(), rtol=1e-4, atol=1e-3)
    assert skipped >= 1  # at least one row's newest fed token was whitespace (seed chosen for it)
    with pytest.raises(ValidationError, match=r"layer 0 is not tracked; call `track_hidden_states\(\[0\]\)`"):
        batch.last_hidden_states([0])
    L = engine.model.config.num_hidden_layers
    with pytest.raises(ValidationError, match=rf"layer {L + 1} is out of range for a {L}-layer model"):
        batch.track_hidden_states([L + 1])


@pytest.mark.parametrize("max_runs", [16, 0], ids=["runs", "one-call"])
def test_decoding_a_subset_of_rows_matches_decoding_all(engine, monkeypatch, max_runs):
    """Idle rows left out of the decode (their own attention runs, or one masked call when too fragmented)
    change nothing for the active rows."""
    from testtime.engines import _llama
    from testtime.engines._sessions import NativeSession

    if engine.runner is None:
        pytest.skip("native runner only")
    monkeypatch.setattr(_llama, "MAX_ATTENTION_RUNS", max_runs)
    prompts = [engine.encode(Request(messages=m))[:-1] for m in MSGS[:2]] * 3  # 6 rows
    full, part = NativeSession(engine.runner), NativeSession(engine.runner)
    full.add_rows(prompts)
    part.add_rows(prompts)
    tokens = torch.tensor([5, 6, 7, 8, 9, 10], device=engine.device)
    pos = torch.tensor([len(p) for p in prompts], device=engine.device)
    rows = torch.tensor([0, 2, 3, 5], device=engine.device)
    active = torch.zeros(6, dtype=torch.bool, device=engine.device)
    active[rows] = True
    want, want_h, _ = full.decode(tokens, pos, torch.ones(6, dtype=torch.bool, device=engine.device))
    got, got_h, _ = part.decode(tokens, pos, active, (), rows)
    assert got.shape == (4, want.shape[1])
    assert torch.allclose(got, want[rows], rtol=1e-4, atol=1e-4) and torch.allclose(got_h, want_h[rows], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("flag, expected", [("auto", torch.float32), ("bfloat16", torch.bfloat16), ("float32", torch.float32)])
def test_dtype_flag_sets_the_in_process_model_dtype(flag, expected, tmp_path):
    """`--dtype` reaches the engine (auto is float32 on a CPU); the CLI's engine builder is the one all commands use."""
    from argparse import Namespace

    from testtime.cli._engine_args import make_local_engine

    tok = make_tokenizer()
    make_llama(tok).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    engine = make_local_engine(Namespace(model=str(tmp_path), device="cpu", dtype=flag, max_batch_size=4, prefix_cache_tokens=0))
    assert engine.model.dtype == expected
    assert engine.max_batch_size == 4 and engine.prefix_cache is None  # --prefix-cache-tokens 0: off


def test_dtype_flag_rejects_unknown_types(capsys):
    from testtime.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["eval", "--dtype", "float8"])
    assert exc.value.code == 2
    assert "--dtype" in capsys.readouterr().err


# -- declared capabilities, the cache keyword, progress --------------------------------------------------


def test_capabilities_are_declared_protocols(engine, tok):
    """What strategies and scorers may use beyond `Engine`/`LiveBatch` is a protocol checked with isinstance; the
    in-process engine has every capability, a scripted (remote-like) engine none of them."""
    from testtime.engines import (
        BatchSizedEngine,
        HiddenStateBatch,
        KVCacheEngine,
        LiveBatch,
        ModelEngine,
        PromptEncoder,
        ScriptedEngine,
    )

    scripted = ScriptedEngine(lambda request, params, index: "x")
    for cap in (ModelEngine, KVCacheEngine, BatchSizedEngine, PromptEncoder):
        assert isinstance(engine, cap) and not isinstance(scripted, cap)
    live, text = engine.start(), scripted.start()
    assert isinstance(live, LiveBatch) and isinstance(text, LiveBatch)  # `supports_add` is part of LiveBatch
    assert isinstance(live, HiddenStateBatch) and not isinstance(text, HiddenStateBatch)
    assert live.supports_add and text.supports_add
    hf = TransformersEngine(make_llama(tok), tokenizer=tok, native=False, device=DEVICE).start(Request(messages=MSGS[0]), SamplingParams(max_tokens=4))
    assert not hf.supports_add  # the transformers forward's cache cannot admit rows once prefilled
    # KV bytes per token: 2 layers x 2 KV heads x head size 16 x fp32, keys and values.
    assert engine.kv_bytes_per_token == 2 * 2 * 2 * 16 * 4


def test_the_transformers_forward_and_the_prm_head_pass_the_cache_as_transformers_asks(tok):
    """transformers 5.x takes the KV cache as `cache=` and warns (FutureWarning) that `past_key_values` goes in
    5.40: the HF session and the PRM head's feature reader use the keyword the installed version has."""
    import inspect
    import warnings

    from testtime.engines._sessions import cache_kwarg
    from testtime.scorers.prm_head import step_features

    model = make_llama(tok)
    renamed = "cache" in inspect.signature(type(model).forward).parameters  # the installed transformers has `cache=`
    assert cache_kwarg(model) == ("cache" if renamed else "past_key_values")
    eng = TransformersEngine(model, tokenizer=tok, native=False, device=DEVICE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        out = eng.generate(Request(messages=MSGS[0]), SamplingParams(temperature=0, max_tokens=6, ignore_eos=True))
        feats = step_features(eng, MSGS[0], ["Step 1: add.\n\nStep 2: 12."])
    assert out[0].completions[0].token_ids == hf_greedy(model, eng.encode(Request(messages=MSGS[0])), 6)
    assert feats[0].shape == (2, model.config.hidden_size)


def test_generate_takes_a_progress_bar_factory(engine):
    """`use_tqdm` as in vLLM: a callable builds the bar (the eval passes one that leaves no line behind)."""
    made = []

    class Bar:
        def __init__(self, **kwargs):
            self.kwargs, self.n = kwargs, 0
            made.append(self)

        def update(self, k):
            self.n += k

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            self.closed = True

    engine.generate([Request(messages=m) for m in MSGS[:2]], SamplingParams(n=3, max_tokens=4, seed=1), use_tqdm=Bar)
    (bar,) = made
    assert (bar.kwargs["total"], bar.kwargs["unit"], bar.n, bar.closed) == (6, "seq", 6, True)


def test_attention_windows_cut_where_row_histories_start_far_apart():
    """Pieces are cut when a row would stretch the piece's spread of first columns past the slack (not when it
    is far from its neighbour only), and each piece attends from its earliest row's first column."""
    from testtime.engines._llama import WINDOW_SLACK, _windows

    assert WINDOW_SLACK == 64
    assert _windows([(0, 3)], [0, 60, 120]) == [(0, 2, 0), (2, 3, 120)]
    assert _windows([(0, 4)], [30, 0, 50, 64]) == [(0, 4, 0)]
    assert _windows([(0, 2), (3, 5)], [0, 200, 9, 5, 300]) == [(0, 1, 0), (1, 2, 200), (3, 4, 5), (4, 5, 300)]


@pytest.mark.parametrize("slack", [0, 10**9], ids=["a-piece-per-row", "one-piece"])
def test_windowed_attention_matches_attending_over_every_column(engine, monkeypatch, slack):
    """Rows whose prompts differ by hundreds of tokens give the same logits whether each attends from its own
    first column or all attend over the whole (masked) history."""
    from testtime.engines import _llama
    from testtime.engines._sessions import NativeSession

    if engine.runner is None:
        pytest.skip("native runner only")
    long = [{"role": "user", "content": "Tom has 5 apples and buys 7 more. " * 12}]
    prompts = [engine.encode(Request(messages=m))[:-1] for m in [MSGS[0], long, MSGS[1], long]]
    assert max(map(len, prompts)) - min(map(len, prompts)) > 100
    tokens = torch.tensor([5, 6, 7, 8], device=engine.device)
    pos = torch.tensor([len(p) for p in prompts], device=engine.device)
    out = {}
    for s in (slack, -1):  # -1: the reference, one call over every column
        monkeypatch.setattr(_llama, "WINDOW_SLACK", 10**9 if s == -1 else s)
        session = NativeSession(engine.runner)
        session.add_rows(prompts)
        if s == -1:
            monkeypatch.setattr(_llama, "_windows", lambda runs, first: [(a, b, 0) for a, b in runs])
        out[s] = session.decode(tokens, pos, torch.ones(4, dtype=torch.bool, device=engine.device))[0]
    assert torch.allclose(out[slack], out[-1], rtol=1e-4, atol=1e-4)


def test_uninitialised_cache_slots_are_never_read(engine, monkeypatch):
    """KV buffers are allocated uninitialised; with them filled with NaN instead, idle rows' columns (a subset
    decode), late-admitted rows' history, a history shift and a reorder still give finite, unchanged outputs."""
    from testtime.engines import _kv_cache
    from testtime.engines._sessions import NativeSession

    if engine.runner is None:
        pytest.skip("native runner only")
    prompts = [engine.encode(Request(messages=m))[:-1] for m in MSGS[:2]] * 2
    tokens = torch.tensor([5, 6, 7, 8], device=engine.device)
    pos = torch.tensor([len(p) for p in prompts], device=engine.device)
    every = torch.ones(4, dtype=torch.bool, device=engine.device)
    rows = torch.tensor([0, 3], device=engine.device)

    def two_steps():
        s = NativeSession(engine.runner)
        s.add_rows(prompts)
        s.decode(tokens, pos, every.clone().index_fill_(0, torch.tensor([1, 2], device=engine.device), False), (), rows)
        return s.decode(tokens, pos + 1, every)[0]

    want = two_steps()
    monkeypatch.setattr(_kv_cache, "_uninitialised", lambda like, shape: like.new_full(shape, float("nan")))
    got = two_steps()
    assert torch.isfinite(got).all() and torch.allclose(got, want, rtol=1e-4, atol=1e-4)

    p = SamplingParams(temperature=0, max_tokens=30, ignore_eos=True)
    batch = engine.start(Request(messages=MSGS[2]), p)
    batch.advance(3)
    batch.add(Request(messages=MSGS[1]), p)  # longer prompt: the history moves right
    batch.advance(5)
    batch.reorder([1, 0, 1])
    batch.advance(6)
    batch.add(Request(messages=MSGS[2]), p)  # shorter than the history: its left columns are never written
    batch.advance(4)
    for row, m in enumerate([MSGS[1], MSGS[2], MSGS[1], MSGS[2]]):
        ref = engine.generate(Request(messages=m), p)[0].completions[0].token_ids
        got_ids = batch.completion(row).token_ids
        assert got_ids == ref[: len(got_ids)]


@pytest.mark.parametrize("slack", [0, 10**9], ids=["a-piece-per-row", "one-piece"])
def test_shared_prefix_attention_matches_each_row_reading_its_own_copy(engine, monkeypatch, slack):
    """Rows forked from one prefilled row read their shared columns once per group (cascade attention); the
    logits equal every row attending over its own copy, through forks, a subset step where a group has one
    active row, a second fork of a member (a newer, longer group) and rows in no group. With one window over
    all rows ("one-piece"), a grouped row's own part would count the span twice if it were not masked."""
    from testtime.engines import _kv_cache, _llama
    from testtime.engines._sessions import NativeSession

    if engine.runner is None:
        pytest.skip("native runner only")
    monkeypatch.setattr(_llama, "WINDOW_SLACK", slack)
    monkeypatch.setattr(_kv_cache, "MIN_SHARED_COLUMNS", 4)
    long = [{"role": "user", "content": "Tom has 5 apples and buys 7 more. " * 6}]
    prompts = [engine.encode(Request(messages=m))[:-1] for m in [MSGS[1], long, MSGS[0]]]
    dev = engine.device
    spans_seen, calls = [], {"span": 0}
    real = _llama.LlamaRunner._shared_groups

    def counting(cache, active):
        groups = real(cache, active)
        calls["span"] += len(groups)
        return groups

    monkeypatch.setattr(_llama.LlamaRunner, "_shared_groups", staticmethod(counting))

    def run(cascade: bool) -> list[torch.Tensor]:
        monkeypatch.setattr(engine.runner, "cascade", cascade)
        s = NativeSession(engine.runner)
        s.add_rows(prompts)
        s.reorder(torch.tensor([0, 0, 0, 1, 1, 2], device=dev))  # groups {0,1,2} and {3,4}; row 5 alone
        pos = torch.tensor([len(prompts[i]) for i in (0, 0, 0, 1, 1, 2)], device=dev)
        every = torch.ones(6, dtype=torch.bool, device=dev)
        outs = []
        for t in range(3):
            outs.append(s.decode(torch.tensor([5, 6, 7, 8, 9, 10], device=dev) + t, pos + t, every)[0])
        # a subset step: group {3, 4} has one active row, group {0, 1, 2} two
        rows = torch.tensor([0, 2, 3, 5], device=dev)
        outs.append(s.decode(torch.tensor([11, 12, 13, 14, 15, 16], device=dev), pos + 3, torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool, device=dev), (), rows)[0])
        spans_seen.append(dict(s.cache.spans))
        s.reorder(torch.tensor([0, 1, 1, 2, 3, 4, 5], device=dev))  # row 1 forked again: a newer group
        pos = torch.cat([pos[:1], pos[1:2], pos[1:]]) + 4
        for t in range(2):
            outs.append(s.decode(torch.tensor([20, 21, 22, 23, 24, 25, 26], device=dev) + t, pos + t, torch.ones(7, dtype=torch.bool, device=dev))[0])
        spans_seen.append(dict(s.cache.spans))
        return outs

    want = run(cascade=False)
    assert calls["span"] == 0
    got = run(cascade=True)
    assert calls["span"] > 0, "the cascade path never ran"
    assert [len(s) for s in spans_seen] == [2, 3, 2, 3]  # per run: two groups, then the second fork starts a third
    for w, g in zip(want, got):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-4)


def test_forks_start_share_groups_over_the_written_columns():
    """`reorder` groups the copies of a row taken more than once, over [its first valid column, col); rows
    taken once keep their group; shifts move spans; compaction ends them; short histories start none."""
    from testtime.engines._kv_cache import MIN_SHARED_COLUMNS, KVCache

    c = KVCache(num_layers=1, num_kv_heads=1, head_dim=2, num_rows=0, capacity=0, dtype=torch.float32, device=torch.device("cpu"))
    P = MIN_SHARED_COLUMNS + 3
    k = torch.randn(1, 2, 1, P, 2)
    valid = torch.ones(2, P, dtype=torch.bool)
    valid[1, :3] = False  # row 1 is left-padded by 3
    c.append_rows(k, k, valid)
    assert c.share == [-1, -1] and c.spans == {}
    c.reorder(torch.tensor([1, 0, 1, 1]))
    assert c.share[0] == c.share[2] == c.share[3] != -1 and c.share[1] == -1
    assert c.spans == {c.share[0]: (3, P)}
    c.reorder(torch.tensor([2, 0, 1]))  # permute and drop: no copies, groups carried
    g = c.share[0]
    assert c.share == [g, g, -1]
    c.append_rows(torch.randn(1, 1, 1, P + 5, 2), torch.randn(1, 1, 1, P + 5, 2), torch.ones(1, P + 5, dtype=torch.bool))
    assert c.spans == {g: (8, P + 5)} and c.share == [g, g, -1, -1]  # shifted right by 5
    c.compact()
    assert c.share == [-1] * 4 and c.spans == {}
    short = KVCache(num_layers=1, num_kv_heads=1, head_dim=2, num_rows=0, capacity=0, dtype=torch.float32, device=torch.device("cpu"))
    short.append_rows(k[..., : MIN_SHARED_COLUMNS - 1, :], k[..., : MIN_SHARED_COLUMNS - 1, :], valid[:, : MIN_SHARED_COLUMNS - 1])
    short.reorder(torch.tensor([0, 0]))
    assert short.share == [-1, -1]
