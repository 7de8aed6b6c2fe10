"""Comparing the settings two eval runs were made with (their `run.json` identities)."""

from __future__ import annotations

__all__ = ["differing_setting"]


def differing_setting(a: dict, b: dict, *, keys=None, ignore=()) -> str | None:
    """The first run setting (of `keys`, else of both identities, sorted) whose values differ between two run
    identities, skipping `ignore`; None when they agree. What resuming, merging shards and joining runs check."""
    names = keys if keys is not None else sorted(set(a) | set(b))
    return next((k for k in names if k not in ignore and a.get(k) != b.get(k)), None)
