"""Incremental detokenization and stop-string matching for one row.

Decoding a growing id list from scratch every step is quadratic; decoding token by token breaks multi-byte
characters and SentencePiece's leading spaces. This is the usual middle way (vLLM's `detokenize_incrementally`):
decode a short window that starts one token back, emit only the new suffix, and hold back text that ends in
an incomplete UTF-8 sequence ("\ufffd") until the next token completes it.
"""

from __future__ import annotations

__all__ = ["IncrementalDetokenizer", "find_stop"]

_CONTEXT = 4  # prompt tokens kept as decoding context so the first generated token's leading space survives


class IncrementalDetokenizer:
    def __init__(self, tokenizer, context_ids: list[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.ids = list(context_ids)[-_CONTEXT:]
        self.prefix_offset = 0
        self.read_offset = len(self.ids)

    def copy(self) -> IncrementalDetokenizer:
        new = IncrementalDetokenizer.__new__(IncrementalDetokenizer)
        new.tokenizer = self.tokenizer
        new.ids = list(self.ids)
        new.prefix_offset = self.prefix_offset
        new.read_offset = self.read_offset
        return new

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (possibly empty)."""
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            # Keep the window short: only the last few ids are ever needed as context.
            if self.prefix_offset > 64:
                drop = self.prefix_offset - _CONTEXT
                self.ids = self.ids[drop:]
                self.prefix_offset -= drop
                self.read_offset -= drop
            return full[len(prefix) :]
        return ""

    def flush(self) -> str:
        """Text still held back (an incomplete character at the end of generation)."""
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.ids)
        return full[len(prefix) :] if len(full) > len(prefix) else ""


def find_stop(text: str, stops: list[str], new_from: int, search_from: int = 0) -> tuple[str, int] | None:
    """The earliest stop string in `text` that ends after `new_from` (so it involves new text) and starts at or
    after `search_from`; returns (stop, start index) or None."""
    best: tuple[str, int] | None = None
    for stop in stops:
        i = text.find(stop, max(search_from, new_from - len(stop) + 1))
        if i >= 0 and (best is None or i < best[1]):
            best = (stop, i)
    return best
