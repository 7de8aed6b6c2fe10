"""Turn a `Request` into prompt token ids, exactly as an uninterrupted generation would have seen them.

Two traps from the reference toolkit, both avoided by construction:
1. Chat templates that strip the last message (`| trim`) eat the trailing "\n\n" of a partial assistant
   message, so the model continues a different text. We render the template with a generation prompt and
   *no* partial message, then append the partial's tokens ourselves.
2. Templates that write the BOS token as text, tokenized again with `add_special_tokens=True`, give two BOS
   tokens. We tokenize rendered templates with `add_special_tokens=False` and add BOS only if the template did
   not and the tokenizer normally would.
The partial is encoded on its own, never merged with the prompt, because generated tokens never merge with
the prompt's last token either; `Request.partial_token_ids` makes continuation exact token for token.
"""

from __future__ import annotations

from .._errors import ValidationError
from ._types import Request

__all__ = ["encode_request", "eos_token_ids"]


def _adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True).input_ids
    return bool(ids) and ids[0] == bos


def encode_request(tokenizer, request: Request) -> tuple[list[int], list[int]]:
    """Return (prompt ids, partial ids); the model sees their concatenation."""
    if request.messages is not None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValidationError(
                "this model's tokenizer has no chat template; send a raw `prompt` instead of `messages`.",
                parameter="messages",
            )
        rendered = tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(rendered, add_special_tokens=False).input_ids
        if _adds_bos(tokenizer) and (not ids or ids[0] != tokenizer.bos_token_id):
            ids = [tokenizer.bos_token_id, *ids]
    else:
        ids = tokenizer(request.prompt, add_special_tokens=True).input_ids
    if request.partial_token_ids is not None:
        partial = list(request.partial_token_ids)
    elif request.partial:
        partial = tokenizer(request.partial, add_special_tokens=False).input_ids
    else:
        partial = []
    if not ids and not partial:
        raise ValidationError("the prompt is empty after tokenization.", parameter="prompt", value=request.prompt)
    return list(ids), partial


def eos_token_ids(tokenizer, generation_config=None) -> set[int]:
    """End-of-sequence ids: the tokenizer's and the generation config's (which may list several)."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    eos = getattr(generation_config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(int(e) for e in eos)
    return ids
