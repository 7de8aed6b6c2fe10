"""A results file that survives crashes: one JSON object per line, appended and fsynced per row.

A crash (or a writer still in the middle of a row) can only ever leave a partial *last* line. Reading skips
it and never touches the file, so `report`, `merge`, ... can read a run that an eval is still writing; only
the writer repairs, in `append`: it cuts a torn last line (or finishes a complete one that lacks its newline)
before writing. A bad line anywhere else is real corruption and raises a `DataError` naming the line and
saying how to keep the rows before it.

A run directory has one writer at a time: `run_dir_lock` takes an exclusive lock on `<dir>/.lock` for as long
as an eval (or a merge) writes there, and a second writer gets a one-line error instead of doubling every row.
Rows written twice anyway (by versions before the lock) are dropped when read, by `drop_duplicates`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from .._errors import DataError

__all__ = ["ResultsFile", "run_dir_lock", "drop_duplicates", "ROW_KEY", "LOCK_FILE"]

ROW_KEY = ("problem_id", "strategy", "seed")
"""What makes an eval row unique: a run holds one row per problem, strategy and seed."""
LOCK_FILE = ".lock"


class ResultsFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> list[dict]:
        """All complete rows, in file order. Read-only: a torn last line (a crash, or a row being written right
        now) is skipped, not cut; the next `append` repairs it."""
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        rows = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not an object")
            except ValueError:
                if all(not rest.strip() for rest in lines[i + 1 :]):
                    break  # a torn write at the end
                raise DataError(self._corrupt(i, num_rows=len(rows))) from None
            rows.append(row)
        return rows

    def _corrupt(self, i: int, *, num_rows: int) -> str:
        p, q = str(self.path), shlex.quote(str(self.path))
        return (
            f"{p}: line {i + 1} is not a JSON object, and complete rows follow it, so the file is corrupted, not torn by a crash. "
            f"To keep the {num_rows} rows before it and redo the rest, run `head -n {i} {q} > {q}.kept && mv {q}.kept {q}` "
            "and rerun the command; to start over, move the run directory away"
        )

    def append(self, rows: Sequence[dict]) -> None:
        """Append rows durably: each is one write of one full line, flushed and fsynced. A torn last line left
        by a crash is cut first (only the writer does this; readers skip it)."""
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        with open(self.path, "ab") as f:
            for row in rows:
                f.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())

    def _repair_tail(self) -> None:
        """Make the file end in a newline: finish a complete last row, cut a torn one."""
        if not self.path.exists():
            return
        with open(self.path, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            start = _last_line_start(f, size)
            f.seek(start)
            tail = f.read()
            try:
                is_row = isinstance(json.loads(tail), dict)
            except ValueError:
                is_row = False
            if is_row:
                f.write(b"\n")
            else:
                f.truncate(start)
            f.flush()
            os.fsync(f.fileno())


def _last_line_start(f, size: int, block: int = 1 << 16) -> int:
    """Offset just after the file's last newline (0 when it has none), reading backwards in blocks."""
    end = size
    while end > 0:
        start = max(0, end - block)
        f.seek(start)
        k = f.read(end - start).rfind(b"\n")
        if k >= 0:
            return start + k + 1
        end = start
    return 0


def drop_duplicates(rows: list[dict], key: Sequence[str] = ROW_KEY) -> tuple[list[dict], int]:
    """(rows with the first of each `key` kept, number dropped). Two writers into one run directory (before the
    lock existed) wrote every row twice; counting both would double the sample and narrow every interval."""
    seen: set[tuple] = set()
    kept = []
    for r in rows:
        k = tuple(json.dumps(r.get(f), sort_keys=True) for f in key)
        if k in seen:
            continue
        seen.add(k)
        kept.append(r)
    return kept, len(rows) - len(kept)


# Locks this process holds, by resolved directory: a merge locks its --out and then runs the summary through
# `run_eval`, which locks the same directory again.
_held: dict[str, tuple[int, int]] = {}  # path -> (fd, depth)
_held_lock = threading.Lock()


@contextlib.contextmanager
def run_dir_lock(directory: str | Path, *, flag: str = "--out") -> Iterator[Path]:
    """Hold the run directory's writer lock (creating the directory) for the block.

    Raises `DataError` when another process holds it, or when `directory` cannot be a run directory (a file,
    or not writable). The lock is `flock` on `<directory>/.lock`: the operating system drops it when the holder
    exits, even by kill -9, so a crash never leaves a stale lock. A directory this call created is removed again
    when nothing but the lock file was written to it (bad input found after the lock was taken)."""
    path = Path(directory)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock_path = path / LOCK_FILE
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileExistsError:
        raise DataError(f"{flag} {path} is a file, not a directory; pass a directory for the run") from None
    except NotADirectoryError:
        raise DataError(f"{flag} {path}: a parent of it is a file, not a directory; pass another directory") from None
    except OSError as exc:
        raise DataError(f"{flag} {path} cannot be written ({exc.strerror or exc}); pass a directory you can write to") from None
    key = os.path.realpath(path)
    with _held_lock:
        if key in _held:
            os.close(fd)
            held_fd, depth = _held[key]
            _held[key] = (held_fd, depth + 1)
            reentered = True
        else:
            reentered = False
    if not reentered:
        try:
            _flock(fd, lock_path)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        with _held_lock:
            _held[key] = (fd, 1)
    try:
        yield path
    finally:
        with _held_lock:
            held_fd, depth = _held[key]
            if depth > 1:
                _held[key] = (held_fd, depth - 1)
                held_fd = None
            else:
                del _held[key]
        if held_fd is not None:
            if created and [p.name for p in path.iterdir()] == [LOCK_FILE]:
                # Nothing was written: leave no empty run directory behind. Unlinked while still locked, so a
                # writer that opened the old file finds it gone when it checks (see `_flock`).
                with contextlib.suppress(OSError):
                    lock_path.unlink()
                    path.rmdir()
            os.close(held_fd)


def _flock(fd: int, lock_path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one writer per directory is then up to the user
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = ""
        with contextlib.suppress(OSError):
            holder = lock_path.read_text().strip()
        raise DataError(
            f"{lock_path.parent} is in use by another testtime process{f' (pid {holder})' if holder else ''} writing the same run; "
            "wait for it to finish (rerunning then resumes) or use another --out"
        ) from None
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
    except FileNotFoundError:
        same = False
    if not same:  # the holder removed the directory it had created while we waited to open it
        raise DataError(f"{lock_path.parent} was removed by another testtime process as we opened it; rerun the command")
