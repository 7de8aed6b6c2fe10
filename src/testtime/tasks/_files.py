"""Reading task rows from JSONL files and from the Hugging Face hub, with errors that say how to fix them.

Both sources yield `(line_number, row)` pairs, so the tasks parse rows one way and every error can name
the file and line ("math500.jsonl line 7: ..."); hub rows are numbered from 1 too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._errors import DataError

__all__ = ["read_jsonl", "read_hub", "require_field", "require_text", "parse_level"]


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line_number, row)` for each non-blank line of a JSONL file; line numbers start at 1."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist; pass the path of a JSONL file")
    with path.open("rb") as f:
        for line_number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path} line {line_number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "JSONL files are UTF-8: re-encode it, e.g. `iconv -f latin1 -t utf-8`"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {line_number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{path} line {line_number}: expected a JSON object, got {type(row).__name__}"
                )
            yield line_number, row


def require_field(row: dict[str, Any], name: str, *, source: str, line_number: int) -> Any:
    """`row[name]`, or a `DataError` naming the field, the line, and the fields the line does have."""
    if name not in row:
        have = ", ".join(sorted(row)) or "none"
        raise DataError(f"{source} line {line_number}: missing field {name!r} (the line has: {have})")
    return row[name]


def require_text(row: dict[str, Any], name: str, *, source: str, line_number: int, numbers: bool = False) -> str:
    """`row[name]` as text: a string, or with `numbers` a finite int or float ("2", "2.5"). Anything else (a
    list, an object, a bool, null) is a `DataError` naming the line and field: stringifying it would grade
    answers against "['2', '3']"."""
    value = require_field(row, name, source=source, line_number=line_number)
    if isinstance(value, str):
        return value
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    kind = "null" if value is None else type(value).__name__
    want = "a string or a number" if numbers else "a string"
    raise DataError(f"{source} line {line_number}: field {name!r} must be {want}, got {kind} {json.dumps(value)[:60]}")


def parse_level(row: dict[str, Any], name: str, *, source: str, line_number: int) -> int:
    """The difficulty level in `row[name]` as 1..5; accepts 3, "3" and MATH's original "Level 3"."""
    value = require_field(row, name, source=source, line_number=line_number)
    text = str(value).removeprefix("Level").strip()
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= 5:
        raise DataError(f"{source} line {line_number}: field {name!r} must be a level 1..5, got {value!r}")
    return int(text)


def read_hub(dataset: str, config: str | None, split: str, *, file_hint: str) -> Iterator[tuple[int, dict]]:
    """Yield `(row_number, row)` of a hub data set split through `datasets`.

    Offline (no network, or `HF_DATASETS_OFFLINE=1` / `HF_HUB_OFFLINE=1` with nothing cached), `datasets`
    raises `ConnectionError`; we turn it into one line telling how to pass a local file (`file_hint`).
    """
    import datasets  # imported here: it takes a second, and generated and file tasks never need it

    try:
        rows = datasets.load_dataset(dataset, config, split=split)
    except ConnectionError as exc:
        # huggingface_hub's OfflineModeIsEnabled is a ConnectionError too, so both cases land here.
        raise DataError(
            f"cannot download {dataset} ({str(exc).splitlines()[0]}); pass a local copy with `--data {file_hint}` "
            f"(data={file_hint!r} in Python)"
        ) from None
    yield from enumerate(rows, start=1)
