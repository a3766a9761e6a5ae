"""Bounded in-process caches: the one rule every cache of a long-running verifier keeps."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Keep ``value`` under ``key``, emptying ``cache`` first when it holds ``limit``
    entries (what is cached is recomputed on a miss, so forgetting all is safe and
    costs less bookkeeping than evicting one by age); returns ``value``."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value
