from __future__ import annotations

import time

import pytest

from dataengine.tiers import RamCache
from dataengine.tiers.ram import ENTRY_OVERHEAD_BYTES

E = 30 + ENTRY_OVERHEAD_BYTES  # budget bytes of one 30-byte entry


def test_lru_eviction_keeps_bytes_within_budget() -> None:
    cache = RamCache(budget_bytes=3 * E + 10)
    for i in range(5):
        cache.put(i, bytes(30))
    c = cache.counters()
    assert (c.entries, c.bytes_held, c.evictions, c.fills) == (3, 3 * E, 2, 5)
    assert cache.get(0) is None and cache.get(1) is None
    assert cache.get(2) == bytes(30)
    cache.put(5, bytes(30))  # evicts 3, the least recently used (2 was just read)
    assert cache.get(3) is None and cache.get(2) is not None
    c = cache.counters()
    assert (c.hits, c.misses, c.bytes_read) == (2, 3, 60)
    assert c.bytes_held <= c.budget_bytes


def test_oversized_values_and_zero_budget_are_not_stored() -> None:
    cache = RamCache(budget_bytes=10 + ENTRY_OVERHEAD_BYTES)
    assert not cache.put("big", bytes(11))
    assert cache.get("big") is None
    zero = RamCache(0)
    assert not zero.put("x", b"")
    assert zero.counters().bytes_held == 0


def test_a_second_put_of_a_key_keeps_one_entry() -> None:
    cache = RamCache(1000)
    cache.put("k", bytes(40))
    cache.put("k", bytes(40))
    c = cache.counters()
    assert (c.entries, c.bytes_held, c.fills) == (1, 40 + ENTRY_OVERHEAD_BYTES, 1)


def test_pinned_entries_are_never_evicted() -> None:
    cache = RamCache(2 * E)
    cache.put("a", bytes(30))
    cache.put("b", bytes(30))
    assert cache.pin("a") and not cache.pin("missing")
    cache.put("c", bytes(30))  # evicts b, not the pinned a
    assert "a" in cache and "b" not in cache and "c" in cache
    assert cache.pin("c")
    assert not cache.put("d", bytes(30))  # full of pinned entries: not stored
    assert cache.counters().bytes_held == 2 * E
    cache.unpin("a")
    assert cache.put("d", bytes(30)) and "a" not in cache


def test_reservations_hold_room_for_decodes_in_flight() -> None:
    cache = RamCache(2 * E)
    assert cache.reserve(E) and cache.reserve(E) and not cache.reserve(1)
    assert not cache.put("x", bytes(30))  # both halves are reserved by others
    assert cache.put("y", bytes(30), pin=True, reserved=E)
    cache.unreserve(E)
    assert cache.put("z", bytes(30))


def test_prefetched_entries_measure_lead_or_wait() -> None:
    cache = RamCache(10 * E)
    cache.put("early", bytes(30), prefetch=True, fill_seconds=0.5)
    time.sleep(0.02)
    assert cache.get("early") is not None
    stalled = time.monotonic()
    cache.put("late", bytes(30), prefetch=True)
    assert cache.get("late", stalled_since=stalled - 1.0) is not None
    assert cache.get("late") is not None  # only the first use counts
    c = cache.counters()
    assert (c.fills, c.prefetch_fills, c.waits) == (2, 1, 1)
    assert c.prefetch_lead_seconds_total >= 0.02 and c.wait_seconds_total >= 1.0
    assert c.fill_seconds_total == 0.5


def test_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="budget_bytes"):
        RamCache(-1)
