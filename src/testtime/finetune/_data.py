"""Reading an SFT file (`testtime export --format sft`) into the prompt/completion rows the trainer takes.

Each record's `messages` end with the assistant turn to learn. It is split off as the completion, so TRL's
SFTTrainer computes the loss on it alone (its default for prompt-completion data): the prompt turns (system,
few-shot examples, question) are what the model is asked, not what it should learn to write. `assistant_only_loss`
would do the same on `messages` but needs `{% generation %}` markers most chat templates (SmolLM2's) lack.
"""

from __future__ import annotations

import json
from pathlib import Path

from .._errors import DataError

__all__ = ["load_sft_data"]


def _record(path: Path, i: int, line: str) -> dict:
    where = f"{path}: line {i + 1}"
    try:
        rec = json.loads(line)
    except ValueError:
        raise DataError(f"{where} is not JSON; pass a JSONL file written by `testtime export --format sft`.") from None
    if not isinstance(rec, dict) or "messages" not in rec:
        keys = ", ".join(rec) if isinstance(rec, dict) else type(rec).__name__
        raise DataError(f"{where} has no `messages` (it has: {keys}); finetune takes SFT records, `testtime export --format sft`.")
    msgs = rec["messages"]
    ok = isinstance(msgs, list) and len(msgs) >= 2 and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in msgs)
    if not ok or msgs[-1]["role"] != "assistant":
        raise DataError(f"{where}: `messages` must be a list of {{role, content}} turns ending with the assistant's; got {json.dumps(msgs)[:120]}.")
    return {"prompt": msgs[:-1], "completion": msgs[-1:]}


def load_sft_data(path: str | Path):
    """A `datasets.Dataset` of conversational prompt/completion rows, in file order. Raises `DataError` naming
    the file and line for a missing file, a line that is not JSON, or a record that is not SFT."""
    import datasets

    path = Path(path)
    if not path.is_file():
        raise DataError(f"--data {path} is not a file; pass the JSONL of `testtime export --format sft`.")
    rows = [_record(path, i, line) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()) if line.strip()]
    if not rows:
        raise DataError(f"--data {path} holds no records.")
    return datasets.Dataset.from_list(rows)
