"""A results file that survives crashes: one JSON object per line, appended and fsynced per row.

A crash can only ever leave a partial *last* line; loading drops it (and truncates the file back to the last
complete row) so the next append starts clean. A bad line anywhere else is real corruption and raises a
`DataError` naming the line, without touching the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._errors import DataError

__all__ = ["ResultsFile"]


class ResultsFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> list[dict]:
        """All complete rows; repairs a torn final line left by a crash."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        rows, pos = [], 0
        lines = data.split(b"\n")
        for i, line in enumerate(lines):
            is_last = i == len(lines) - 1
            if not line.strip():
                pos += len(line) + 1
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not an object")
            except ValueError:
                if is_last or all(not rest.strip() for rest in lines[i + 1 :]):
                    # A torn write at the end: keep everything before it.
                    with open(self.path, "r+b") as f:
                        f.truncate(pos)
                    break
                raise DataError(f"{self.path}: line {i + 1} is not a JSON object; the results file is corrupted (move it away to start over)") from None
            if is_last:  # a complete object without its newline: finish the line
                with open(self.path, "ab") as f:
                    f.write(b"\n")
            rows.append(row)
            pos += len(line) + 1
        return rows

    def append(self, rows: list[dict]) -> None:
        """Append rows durably: each is one write of one full line, flushed and fsynced."""
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            for row in rows:
                f.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
