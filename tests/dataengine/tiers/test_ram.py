from __future__ import annotations

import pytest

from dataengine.tiers import RamCache


def test_lru_eviction_keeps_bytes_within_budget() -> None:
    cache = RamCache(budget_bytes=100)
    for i in range(5):
        cache.put(i, bytes(30))
    c = cache.counters()
    assert (c.entries, c.bytes_held, c.evictions) == (3, 90, 2)
    assert cache.get(0) is None and cache.get(1) is None
    assert cache.get(2) == bytes(30)
    cache.put(5, bytes(30))  # evicts 3, the least recently used (2 was just read)
    assert cache.get(3) is None and cache.get(2) is not None
    c = cache.counters()
    assert (c.hits, c.misses) == (2, 3)
    assert c.bytes_held <= c.budget_bytes


def test_oversized_values_and_zero_budget_are_not_stored() -> None:
    cache = RamCache(budget_bytes=10)
    cache.put("big", bytes(11))
    assert cache.get("big") is None
    zero = RamCache(0)
    zero.put("x", b"")
    assert zero.counters().bytes_held == 0


def test_replacing_a_key_updates_the_byte_count() -> None:
    cache = RamCache(100)
    cache.put("k", bytes(40))
    cache.put("k", bytes(10))
    assert cache.counters().bytes_held == 10


def test_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="budget_bytes"):
        RamCache(-1)
