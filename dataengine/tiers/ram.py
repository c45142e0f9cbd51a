"""L0: decoded-sample cache in engine RAM, LRU within a byte budget."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["CacheCounters", "RamCache"]


@dataclass(frozen=True)
class CacheCounters:
    hits: int
    misses: int
    bytes_held: int
    budget_bytes: int
    entries: int
    evictions: int


class RamCache:
    """Maps a key to immutable ``bytes``; holds at most ``budget_bytes`` of
    values (an entry larger than the budget is not stored). Thread-safe."""

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._held = 0
        self._hits = self._misses = self._evictions = 0

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self._misses += 1
                return None
            self._items.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: Hashable, value: bytes) -> None:
        size = len(value)
        if size > self.budget_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._held -= len(old)
            while self._held + size > self.budget_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                self._held -= len(evicted)
                self._evictions += 1
            self._items[key] = value
            self._held += size

    def counters(self) -> CacheCounters:
        with self._lock:
            return CacheCounters(
                self._hits,
                self._misses,
                self._held,
                self.budget_bytes,
                len(self._items),
                self._evictions,
            )
