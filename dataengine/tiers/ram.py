"""L0: decoded prefix outputs ("prefix blobs") in engine RAM, LRU within a
byte budget, with pins for entries a stream is about to use."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable

from dataengine.tiers.counters import CacheCounters, TierTally

__all__ = ["ENTRY_OVERHEAD_BYTES", "CacheCounters", "RamCache"]

# Charged per entry on top of the value's length: the key tuple, the dict
# slots and the bytes object's header. Keeps tiny values honest.
ENTRY_OVERHEAD_BYTES = 256


class RamCache:
    """Maps a key to immutable ``bytes``; holds at most ``budget_bytes``
    (each entry costs ``len(value) + ENTRY_OVERHEAD_BYTES``). Thread-safe.

    Pinned entries (``pin``, or ``put(pin=True)``) are never evicted until
    unpinned: a stream pins what it will serve next. When the budget is full
    of pinned entries, ``put`` does not store (and returns False) rather than
    exceed the budget. ``reserve`` sets room aside for decodes in flight."""

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self._lru: OrderedDict[Hashable, bytes] = OrderedDict()  # unpinned, oldest first
        self._pinned: dict[Hashable, tuple[bytes, int]] = {}  # value, pin count
        self._fresh: dict[Hashable, float] = {}  # prefetched, not yet used: stored at (monotonic s)
        self._lock = threading.Lock()
        self._held = 0
        self._pinned_bytes = 0
        self._reserved = 0
        self._tally = TierTally()

    @staticmethod
    def cost(value_bytes: int) -> int:
        """Budget bytes an entry with a value of ``value_bytes`` takes."""
        return value_bytes + ENTRY_OVERHEAD_BYTES

    # -- lookups -----------------------------------------------------------

    def get(
        self, key: Hashable, stalled_since: float | None = None, *, count: bool = True
    ) -> bytes | None:
        """The value, counted as a hit or a miss unless ``count`` is False (the
        caller counted this sample's lookup already, see ``note_miss``).
        ``stalled_since`` (monotonic seconds) says since when the caller had
        nothing else to do: it turns the first use of a prefetched entry into
        a wait, not a lead."""
        now = time.monotonic()
        with self._lock:
            pinned = self._pinned.get(key)
            if pinned is not None:
                value = pinned[0]
            else:
                found = self._lru.get(key)
                if found is None:
                    self._tally.misses += count
                    return None
                value = found
                self._lru.move_to_end(key)
            self._tally.hits += count
            self._tally.bytes_read += len(value)
            stored_at = self._fresh.pop(key, None)
            if stored_at is not None:
                self._tally.first_use(stored_at, now, stalled_since)
            return value

    def note_miss(self) -> None:
        """Count a miss found without ``get`` (a decode ahead was started)."""
        with self._lock:
            self._tally.misses += 1

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._pinned or key in self._lru

    # -- pins and reservations ----------------------------------------------

    def pin(self, key: Hashable) -> bool:
        """Protect ``key`` from eviction; False (nothing pinned) when absent."""
        with self._lock:
            return self._pin_locked(key)

    def _pin_locked(self, key: Hashable) -> bool:
        pinned = self._pinned.get(key)
        if pinned is not None:
            self._pinned[key] = (pinned[0], pinned[1] + 1)
            return True
        value = self._lru.pop(key, None)
        if value is None:
            return False
        self._pinned[key] = (value, 1)
        self._pinned_bytes += self.cost(len(value))
        return True

    def unpin(self, key: Hashable) -> None:
        """Undo one ``pin``; the entry becomes the most recently used."""
        with self._lock:
            pinned = self._pinned.get(key)
            if pinned is None:
                return
            value, count = pinned
            if count > 1:
                self._pinned[key] = (value, count - 1)
                return
            del self._pinned[key]
            self._pinned_bytes -= self.cost(len(value))
            self._lru[key] = value

    def reserve(self, nbytes: int) -> bool:
        """Set ``nbytes`` aside for a value being produced, if they fit next to
        the pinned entries and other reservations (unpinned ones can be evicted)."""
        with self._lock:
            if self._pinned_bytes + self._reserved + nbytes > self.budget_bytes:
                return False
            self._reserved += nbytes
            return True

    def unreserve(self, nbytes: int) -> None:
        with self._lock:
            self._reserved = max(0, self._reserved - nbytes)

    # -- stores --------------------------------------------------------------

    def put(
        self,
        key: Hashable,
        value: bytes,
        *,
        pin: bool = False,
        prefetch: bool = False,
        fill_seconds: float = 0.0,
        reserved: int = 0,
    ) -> bool:
        """Store ``value`` (evicting least recently used unpinned entries);
        False when it cannot fit without evicting pinned ones. ``pin`` pins it
        once; ``prefetch`` marks it produced ahead of need (its first ``get``
        measures the lead); ``fill_seconds`` is what producing it cost;
        ``reserved`` releases a ``reserve`` made for it."""
        size = self.cost(len(value))
        now = time.monotonic()
        with self._lock:
            self._reserved = max(0, self._reserved - reserved)
            if key in self._pinned or key in self._lru:
                # Prefix outputs are deterministic: a second producer of the
                # same key (two streams missed at once) adds nothing but a pin.
                if pin:
                    self._pin_locked(key)
                return True
            if size + self._pinned_bytes + self._reserved > self.budget_bytes:
                return False
            while self._held + size > self.budget_bytes and self._lru:
                evicted_key, evicted = self._lru.popitem(last=False)
                self._held -= self.cost(len(evicted))
                self._fresh.pop(evicted_key, None)
                self._tally.evictions += 1
            if self._held + size > self.budget_bytes:
                return False
            if pin:
                self._pinned[key] = (value, 1)
                self._pinned_bytes += size
            else:
                self._lru[key] = value
            self._held += size
            self._tally.filled(fill_seconds)
            if prefetch:
                self._fresh[key] = now
            return True

    def counters(self) -> CacheCounters:
        with self._lock:
            return self._tally.counters(
                bytes_held=self._held,
                budget_bytes=self.budget_bytes,
                entries=len(self._lru) + len(self._pinned),
            )
