"""The five reward-model families on tiny local models built in their formats (special tokens included).

Each family is checked against an independent re-implementation of its published reference code (the
model-card snippets and search-and-learn), which reads one sequence at a time without padding; the scorer
must match it to float precision while batching, sorting and padding. Read positions are also checked
token by token, and a trailing separator must not add an empty step.
"""

from __future__ import annotations

import pytest
import torch
from _tiny import make_llama, make_tokenizer

from testtime._errors import UnknownNameError, ValidationError
from testtime.scorers import (
    MathShepherdScorer,
    ORMScorer,
    QwenPRMScorer,
    RLHFlowScorer,
    ScoreRequest,
    SkyworkPRMScorer,
    load_scorer,
)

# A Llama-3-like template: BOS written as text, trimmed contents, the assistant header ends in a blank line and
# a turn ends with the end token and nothing after it (so the reference's position -3 predicts "+").
LLAMA3_LIKE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n\n' + message['content'] | trim + '<|im_end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>' + 'assistant\n\n' }}{% endif %}"
)
QWEN_LIKE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

QUESTION = "Tom has 5 apples and buys 7 more. How many apples does he have?"
CANDIDATES = [
    "Step 1: add the numbers.\n\nStep 2: 5 + 7 = 12.\n\nTherefore, the final answer is: $\\boxed{12}$.",
    "5 + 7 = 13.",
    "Step 1: multiply 3 by 4 to get 12.\n\nThe answer is 42.",
    "Step 1: add the numbers.\n\n",  # partial, ends in the separator
]


def _tok(template=QWEN_LIKE, *, add_bos=False):
    tok = make_tokenizer(template=template, add_bos=add_bos)
    tok.add_tokens(["ки"])
    tok.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    return tok


def _steps(text):
    return [s.strip() for s in text.split("\n\n") if s.strip()]


def _close(a, b):
    assert len(a) == len(b), (a, b)
    assert all(abs(x - y) < 1e-5 for x, y in zip(a, b)), (a, b)


def _check_batching(scorer, set_batch):
    req = ScoreRequest(question=QUESTION, candidates=CANDIDATES)
    set_batch(1)
    one = scorer.score(req)[0]
    set_batch(8)
    many = scorer.score([req, ScoreRequest(question="Another one?", candidates=["1 + 1 = 2."])])[0]
    for a, b in zip(one, many):
        _close(a, b)
    return one


# -- rlhflow ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rlhflow():
    tok = _tok(LLAMA3_LIKE)
    return RLHFlowScorer(make_llama(tok, seed=1), tokenizer=tok, batch_size=3)


def _rlhflow_reference(model, tok, question, steps):
    """The model card's loop: one conversation per step, P(+) from logits[-3] over the tokens of "+ -"."""
    cand = tok.encode("+ -", add_special_tokens=False)
    conv, scores = [], []
    for k, step in enumerate(steps):
        conv.append({"role": "user", "content": f"{question} {step}" if k == 0 else step})
        conv.append({"role": "assistant", "content": "+"})
        ids = tok(tok.apply_chat_template(conv, tokenize=False), add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[:, -3, cand]
        scores.append(float(logits.softmax(-1)[0, 0]))
    return scores


def test_rlhflow_matches_reference_and_batching(rlhflow):
    scores = _check_batching(rlhflow, lambda b: setattr(rlhflow.runner, "batch_size", b))
    for text, got in zip(CANDIDATES, scores):
        _close(got, _rlhflow_reference(rlhflow.runner.model, rlhflow.runner.tokenizer, QUESTION, _steps(text)))


def test_rlhflow_reads_the_token_before_each_plus(rlhflow):
    tok = rlhflow.runner.tokenizer
    ids, pos = rlhflow.encode(QUESTION, _steps(CANDIDATES[0]))
    plus = tok.convert_tokens_to_ids("+")
    assert [ids[p + 1] for p in pos] == [plus] * 3
    # Exactly the assistant turns' "+", not a "+" inside a user turn ("5 + 7" tokenizes as " +").
    assert sum(1 for x in ids if x == plus) == 3


# -- math-shepherd ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shepherd():
    tok = _tok(add_bos=True)  # Mistral-like: the tokenizer adds BOS
    return MathShepherdScorer(make_llama(tok, seed=2), tokenizer=tok, batch_size=2)


def _shepherd_reference(model, tok, question, steps):
    cand = tok.encode("+ -", add_special_tokens=False)
    tag = tok.encode("ки")[-1]
    output = "\n".join(f"{s} ки" for s in steps)
    ids = torch.tensor([tok.encode(f"{question} {output}")])
    with torch.no_grad():
        scores = model(ids).logits[:, :, cand].softmax(-1)[:, :, 0]
    return scores[ids == tag].tolist()


def test_math_shepherd_matches_reference_and_batching(shepherd):
    scores = _check_batching(shepherd, lambda b: setattr(shepherd.runner, "batch_size", b))
    for text, got in zip(CANDIDATES, scores):
        _close(got, _shepherd_reference(shepherd.runner.model, shepherd.runner.tokenizer, QUESTION, _steps(text)))


def test_math_shepherd_ignores_tags_in_the_question(shepherd):
    ids, pos = shepherd.encode("What is ки plus 1?", ["1 + 1 = 2.", "So 2."])
    assert len(pos) == 2 and all(ids[p] == shepherd.tag_id for p in pos)
    assert sum(x == shepherd.tag_id for x in ids) == 3


# -- qwen-prm -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qwen():
    from transformers import Qwen2Config, Qwen2ForTokenClassification

    tok = _tok(QWEN_LIKE)
    torch.manual_seed(3)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, num_labels=2, initializer_range=0.6, pad_token_id=tok.pad_token_id, use_sliding_window=False)
    model = Qwen2ForTokenClassification(cfg).eval()  # a token-level two-class head, like Qwen2ForProcessRewardModel
    return QwenPRMScorer(model, tokenizer=tok, batch_size=2)


def _qwen_reference(model, tok, question, steps):
    messages = [
        {"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"},
    ]
    ids = torch.tensor([tok.encode(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False))])
    with torch.no_grad():
        probs = model(input_ids=ids).logits.softmax(-1)  # (1, T, 2)
    return probs[0][ids[0] == tok.encode("<extra_0>")[0]][:, 1].tolist()


def test_qwen_prm_matches_reference_and_batching(qwen):
    scores = _check_batching(qwen, lambda b: setattr(qwen.runner, "batch_size", b))
    for text, got in zip(CANDIDATES, scores):
        _close(got, _qwen_reference(qwen.runner.model, qwen.runner.tokenizer, QUESTION, _steps(text)))


# -- skywork-prm ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def skywork():
    tok = _tok(QWEN_LIKE)
    model = make_llama(tok, seed=4, model_type="qwen2")
    torch.manual_seed(4)
    head = torch.nn.Linear(64, 1)
    return SkyworkPRMScorer(model, tokenizer=tok, value_head=head, batch_size=2)


def _skywork_reference(model, head, tok, question, response):
    """SkyworkAI/skywork-o1-prm-inference `prepare_input` (step_token "\\n") and `derive_step_rewards`."""
    prompt_ids = tok.encode(tok.bos_token + question + "\n")
    response_ids, flags = [], [0] * len(prompt_ids)
    step_token_id = tok.encode("\n")[-1]
    for step in response.split("\n"):
        step_ids = tok.encode(step) if step != "" else []
        step_ids += [step_token_id]
        response_ids += step_ids
        flags += [0] * (len(step_ids) - 1) + [1]
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        values = torch.sigmoid(head(model.model(ids).last_hidden_state))[0, :, 0]
    return [float(v) for v, f in zip(values, flags) if f]


def test_skywork_prm_matches_reference_and_batching(skywork):
    scores = _check_batching(skywork, lambda b: setattr(skywork.runner, "batch_size", b))
    for text, got in zip(CANDIDATES, scores):
        _close(got, _skywork_reference(skywork.runner.model, skywork.value_head, skywork.runner.tokenizer, QUESTION, "\n".join(_steps(text))))


def test_skywork_reference_scores_an_empty_trailing_step_and_we_do_not(skywork):
    ref = _skywork_reference(skywork.runner.model, skywork.value_head, skywork.runner.tokenizer, QUESTION, "5 + 7 = 12.\n")
    ours = skywork.score(ScoreRequest(question=QUESTION, candidates=["5 + 7 = 12.\n\n"]))[0][0]
    assert len(ref) == 2 and len(ours) == 1
    _close(ours, ref[:1])


# -- orm ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def orm():
    tok = _tok(QWEN_LIKE)
    model = make_llama(tok, seed=5)
    from transformers import LlamaForSequenceClassification

    cfg = model.config
    cfg.num_labels = 3
    torch.manual_seed(5)
    clf = LlamaForSequenceClassification(cfg).eval()
    return ORMScorer(clf, tokenizer=tok, head=2, batch_size=2)


def test_orm_matches_unpadded_model_and_scores_partials(orm):
    tok, model = orm.runner.tokenizer, orm.runner.model
    scores = _check_batching(orm, lambda b: setattr(orm.runner, "batch_size", b))
    for text, got in zip(CANDIDATES, scores):
        msgs = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": text.strip()}]
        ids = tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False).input_ids
        with torch.no_grad():
            ref = torch.sigmoid(model(input_ids=torch.tensor([ids])).logits[0, 2]).item()
        _close(got, [ref])
    assert orm.score(ScoreRequest(question=QUESTION, candidates=["", "  "]))[0] == [[], []]


# -- rules shared by every family --------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["rlhflow", "shepherd", "qwen", "skywork"])
def test_trailing_separator_adds_no_empty_step(family, request):
    scorer = request.getfixturevalue(family)
    full, partial, bare, empty = scorer.score(
        ScoreRequest(question=QUESTION, candidates=["A first step.\n\nA second step.", "A first step.\n\nA second step.\n\n", "A first step.\n\nA second step.", ""])
    )[0]
    assert len(full) == 2 and empty == []
    _close(partial, full)  # equal up to float noise: the two texts may share a batch with different padding
    _close(bare, full)


def test_usage_counts_tokens_and_calls(qwen):
    before = qwen.usage.copy()
    qwen.score(ScoreRequest(question=QUESTION, candidates=CANDIDATES[:2]))
    delta = qwen.usage - before
    expected = sum(len(qwen.encode(QUESTION, _steps(t))[0]) for t in CANDIDATES[:2])
    assert (delta.num_calls, delta.num_tokens) == (1, expected)


@pytest.mark.parametrize(
    "name, kwargs, error, match",
    [
        pytest.param("rlhflow", {}, ValidationError, "--scorer-model", id="no-model"),
        pytest.param("orm", {"model": None}, ValidationError, "--scorer-model", id="orm-no-model"),
        pytest.param("nope", {}, UnknownNameError, "math-shepherd", id="unknown"),
        pytest.param("orm", {"model": "x", "transform": "tanh"}, ValidationError, "transform", id="bad-transform"),
        pytest.param("remote", {}, ValidationError, "--scorer remote needs --scorer-model", id="remote-no-model"),
        pytest.param("oracle", {"model": "x"}, ValidationError, "the oracle scorer takes no option 'model'; it takes none", id="option-not-taken"),
        pytest.param("confidence:tail", {"device": "cpu"}, ValidationError, "takes no option 'device'; its options are: window, tail, top_logprobs", id="confidence-option"),
        pytest.param("oracle:x", {}, UnknownNameError, "unknown scorer 'oracle:x'", id="metric-of-another-family"),
    ],
)
def test_load_scorer_errors(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_scorer(name, **kwargs)


def test_one_factory_builds_every_family():
    """`load_scorer` knows every family: the engine goes to those that declare `needs_engine`, options to the
    family's class, and "default" follows the engine (a server lends no model: the logprob confidence)."""
    from testtime.engines import ScriptedEngine
    from testtime.scorers import SCORERS, ConfidenceScorer, OracleScorer, RemoteScorer, default_scorer

    assert sorted(n for n, cls in SCORERS.items() if getattr(cls, "needs_engine", False)) == ["prm-head", "self-eval"]
    remote_engine = ScriptedEngine(lambda request, params, index: "x")
    assert default_scorer(remote_engine) == "confidence:mean"
    scorer = load_scorer("default", engine=remote_engine)
    assert isinstance(scorer, ConfidenceScorer) and scorer.metric == "mean"
    assert isinstance(load_scorer("oracle", engine=remote_engine), OracleScorer)
    remote = load_scorer("remote", model="prm", base_url="http://127.0.0.1:1", endpoint="classify", max_retries=0)
    assert isinstance(remote, RemoteScorer) and (remote.model, remote.endpoint, remote.base_urls) == ("prm", "classify", ["http://127.0.0.1:1"])


def test_cli_flags_reach_the_family_that_reads_them():
    """The CLI builds every scorer through `load_scorer`, adding only the flags the named family reads."""
    from argparse import Namespace

    from testtime.cli._engine_args import make_scorer, scorer_options

    args = Namespace(scorer="rlhflow", scorer_model="m", scorer_batch_size=4, device="cpu", engine="transformers", scorer_url=["http://h:1"], scorer_endpoint="pooling", api_key_env=None, max_concurrency=2, max_retries=0, request_timeout=5.0)
    assert scorer_options(args, "rlhflow") == {"model": "m", "batch_size": 4, "device": "cpu"}
    assert scorer_options(args, "remote") == {"model": "m", "base_url": ["http://h:1"], "endpoint": "pooling", "api_key": None, "max_concurrency": 2, "max_retries": 0, "timeout": 5.0}
    assert scorer_options(args, "prm-head") == scorer_options(args, "confidence:mean") == {}
    assert make_scorer(args, None, strategies=["majority", "greedy"]) is None  # nothing ranks: no reward model loads
    remote = make_scorer(Namespace(**{**vars(args), "scorer": "remote"}), None)
    assert (remote.model, remote.base_urls, remote.client.max_retries) == ("m", ["http://h:1"], 0)
