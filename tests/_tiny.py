"""Tiny random-weight models and tokenizers built inside the tests (no downloads), like nanoGPT's baby GPT.

The tokenizer is a byte-level BPE trained in a few milliseconds on a small corpus; weights are drawn with a
large init scale so next-token distributions are peaked (greedy decoding is then stable under the ~1e-5
numerical differences between our forward and transformers').
"""

from __future__ import annotations

import functools

import torch

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# A Llama-3-like template: writes BOS as text and trims every message (the two continuation traps).
TRIMMING_BOS = (
    "{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] | trim + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "Step 1: add the numbers.\n\nStep 2: multiply 3 by 4 to get 12.\n\nTherefore, the final answer is: $\\boxed{12}$.",
    "Tom has 5 apples and buys 7 more. How many apples does he have? 5 + 7 = 12.",
    "The answer is 42. Let us check: 6 * 7 = 42. Yes.\n\n## Step 1: Compute\n\n",
    "user assistant system hello world the a of to is in that it was for on are as with",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 + - * / = ( ) . , : ; ! ?",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>"]


@functools.cache
def _tokenizer_object(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    return tok.to_str()


def make_tokenizer(*, template: str = CHATML, add_bos: bool = False, vocab_size: int = 400):
    """A fast tokenizer with ChatML specials; `add_bos=True` makes it prepend <s> like Llama tokenizers do."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_str(_tokenizer_object(vocab_size))
    if add_bos:
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = template
    return fast


def make_llama(tokenizer, *, seed: int = 0, model_type: str = "llama", init: float = 0.6, **overrides):
    """A 2-layer, hidden-64 causal LM of the given Llama-family type with seeded random weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    kwargs = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=init,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    if model_type == "qwen2":
        kwargs["use_sliding_window"] = False
    kwargs.update(overrides)
    config = AutoConfig.for_model(model_type, **kwargs)
    model = AutoModelForCausalLM.from_config(config)
    return model.eval()


def make_gpt2(tokenizer, *, seed: int = 0):
    """A non-Llama architecture, which runs through the transformers-forward fallback."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_positions=512,
        initializer_range=0.6,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return GPT2LMHeadModel(config).eval()


def crc_scorer():
    """A deterministic scorer with no model: each step's score is a hash of its text, so scores differ per row."""
    import zlib

    from testtime.scorers import ScriptedScorer

    return ScriptedScorer(lambda q, steps: [zlib.crc32(s.encode()) % 1000 / 1000 for s in steps])
