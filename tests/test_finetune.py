"""`testtime finetune` on a tiny random-weight model: the loss on the training data goes down, the saved directory
loads through testtime's engine and generates what transformers generates, LoRA is merged, resume continues, and
bad data files are one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from _tiny import CHATML, make_llama, make_tokenizer

from testtime import Request, SamplingParams, TransformersEngine
from testtime._errors import DataError, ValidationError
from testtime.cli import main
from testtime.finetune import FinetuneParams, finetune, load_sft_data

pytest.importorskip("trl")

ANSWERS = ["Step 1: add the numbers.\n\nThe answer is 12.", "5 + 7 = 12. The answer is 12.", "Step 2: multiply 3 by 4 to get 12."]


def records():
    return [
        {"messages": [{"role": "system", "content": "hello"}, {"role": "user", "content": f"Tom has {k} apples"}, {"role": "assistant", "content": a}], "provenance": {"candidate": k}}
        for k, a in enumerate(ANSWERS)
    ]


@pytest.fixture
def base(tmp_path):
    tok = make_tokenizer()
    model = make_llama(tok, init=0.02)  # a normal init: the large test init makes losses of ~100 nats
    path = tmp_path / "base"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records()))
    return path


def completion_nll(model_dir) -> float:
    """Mean NLL of the assistant turns' tokens given their prompts, as the trainer's loss counts them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    total, count = 0.0, 0
    for r in records():
        prompt = tok.apply_chat_template(r["messages"][:-1], add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(r["messages"], tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False).input_ids
        ids = torch.tensor([tok(full, add_special_tokens=False).input_ids])
        with torch.no_grad():
            logp = model(ids).logits[0, :-1].log_softmax(-1)
        targets = ids[0, 1:]
        nll = -logp[torch.arange(len(targets)), targets][len(p_ids) - 1 :]
        total, count = total + nll.sum().item(), count + len(nll)
    return total / count


def greedy_parity(model_dir):
    """The engine's greedy tokens from the saved dir, and transformers' own generate on the same prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    msgs = records()[0]["messages"][:-1]
    engine = TransformersEngine(str(model_dir), device="cpu")
    ours = engine.generate(Request(messages=msgs), SamplingParams(temperature=0.0, max_tokens=8))[0].completions[0].token_ids
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = torch.tensor([tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]])
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ref = model.generate(ids, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id)[0, ids.shape[1] :].tolist()
    return list(ours), ref[: len(ours)]


def test_full_finetune_lowers_loss_and_saves_a_loadable_model(base, data, tmp_path):
    out = tmp_path / "tuned"
    result = finetune(data, out, model=str(base), params=FinetuneParams(max_steps=6, learning_rate=3e-3, batch_size=3), progress=False)
    assert [s for s, _ in result.losses] == [1, 2, 3, 4, 5, 6]
    assert completion_nll(out) < completion_nll(base) - 0.5
    assert result.losses[-1][1] < result.losses[0][1]
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).chat_template == CHATML
    ours, ref = greedy_parity(out)
    assert len(ours) > 0 and ours == ref
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "finetune.json").read_text())["losses"] == [list(x) for x in result.losses]


def test_lora_is_merged_into_plain_weights(base, data, tmp_path):
    out = tmp_path / "lora"
    finetune(data, out, model=str(base), params=FinetuneParams(max_steps=4, learning_rate=1e-2, batch_size=3, lora=True, lora_r=4, lora_alpha=8), progress=False)
    assert not (out / "adapter_config.json").exists()
    from safetensors.torch import load_file

    tensors = load_file(out / "model.safetensors")
    assert not any("lora" in k for k in tensors)
    base_q = load_file(base / "model.safetensors")["model.layers.0.self_attn.q_proj.weight"]
    assert not torch.equal(tensors["model.layers.0.self_attn.q_proj.weight"], base_q)  # the adapter is in the weights
    assert completion_nll(out) < completion_nll(base)


def test_resume_continues_from_the_last_checkpoint(base, data, tmp_path):
    out = tmp_path / "tuned"
    params = FinetuneParams(max_steps=2, learning_rate=3e-3, batch_size=3, save_steps=1)
    finetune(data, out, model=str(base), params=params, progress=False)
    with pytest.raises(ValidationError, match="is not empty; pass --resume"):
        finetune(data, out, model=str(base), params=params, progress=False)
    params.max_steps = 3
    result = finetune(data, out, model=str(base), params=params, resume=True, progress=False)
    # steps 1-2 come from the checkpoint's history, only step 3 ran now
    assert [s for s, _ in result.losses] == [1, 2, 3]
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]


@pytest.mark.parametrize(
    "content, message",
    [
        pytest.param(None, "is not a file", id="missing"),
        pytest.param("", "holds no records", id="empty"),
        pytest.param('{"messages": [}\n', "line 1 is not JSON", id="not-json"),
        pytest.param('{"prompt": [], "chosen": [], "rejected": []}\n', "line 1 has no `messages` (it has: prompt, chosen, rejected)", id="dpo-file"),
        pytest.param('{"messages": [{"role": "user", "content": "q"}]}\n', "must be a list of {role, content} turns ending with the assistant's", id="no-answer"),
    ],
)
def test_bad_data_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "d.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{").replace("}", r"\}")):
        load_sft_data(path)
    # through the CLI: one line, exit 1, before any model loads (the model name does not exist)
    rc = main(["finetune", "--data", str(path), "--out", str(tmp_path / "m"), "--model", str(tmp_path / "no-model")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "m").exists()


def test_data_is_split_into_prompt_and_completion(data):
    ds = load_sft_data(data)
    assert ds.column_names == ["prompt", "completion"]
    assert ds[1]["completion"] == [{"role": "assistant", "content": ANSWERS[1]}]
    assert ds[1]["prompt"] == records()[1]["messages"][:2]
