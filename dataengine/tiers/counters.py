"""``CacheCounters``: the figures every tier reports (hits, bytes, fills,
prefetch), and ``TierTally``, the running counts every tier keeps (lookups,
evictions, bytes read, fill, prefetch and wait timings). ``GetStats`` and
Prometheus show them per tier."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CacheCounters", "TierTally"]


@dataclass(frozen=True)
class CacheCounters:
    """One tier's counters since the engine started.

    ``hits``/``misses``: lookups of one sample in this tier (for L2, every
    read from the shared filesystem is a hit; it has no misses).
    ``bytes_read``: bytes read out of the tier. ``bytes_held``/``entries``:
    what it holds now, within ``budget_bytes`` (0: no budget / disabled).
    ``fills``: entries written (L0: decoded prefixes stored, L1: shards copied
    from L2), taking ``fill_seconds_total``. ``prefetch_fills``: fills started
    for requested ids that completed before a stream needed them, on average
    ``prefetch_lead_seconds_total / prefetch_fills`` ahead of first use.
    ``waits``: times a stream had nothing else to send and waited for a fill
    of this tier in progress, ``wait_seconds_total`` in all."""

    hits: int = 0
    misses: int = 0
    bytes_held: int = 0
    budget_bytes: int = 0
    entries: int = 0
    evictions: int = 0
    bytes_read: int = 0
    fills: int = 0
    fill_seconds_total: float = 0.0
    prefetch_fills: int = 0
    prefetch_lead_seconds_total: float = 0.0
    waits: int = 0
    wait_seconds_total: float = 0.0


class TierTally:
    """A tier's running counts: lookups (``hits``, ``misses``), ``evictions``,
    ``bytes_read``, and fill, prefetch-lead and wait accounting. Not
    thread-safe on its own: callers hold their tier's lock."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.bytes_read = 0
        self.fills = 0
        self.fill_seconds = 0.0
        self.prefetch_fills = 0
        self.prefetch_lead_seconds = 0.0
        self.waits = 0
        self.wait_seconds = 0.0

    def filled(self, seconds: float) -> None:
        self.fills += 1
        self.fill_seconds += max(0.0, seconds)

    def counters(self, *, bytes_held: int, budget_bytes: int, entries: int) -> CacheCounters:
        """The tier's ``CacheCounters``: these counts with its size figures."""
        return CacheCounters(
            hits=self.hits,
            misses=self.misses,
            bytes_held=bytes_held,
            budget_bytes=budget_bytes,
            entries=entries,
            evictions=self.evictions,
            bytes_read=self.bytes_read,
            fills=self.fills,
            fill_seconds_total=self.fill_seconds,
            prefetch_fills=self.prefetch_fills,
            prefetch_lead_seconds_total=self.prefetch_lead_seconds,
            waits=self.waits,
            wait_seconds_total=self.wait_seconds,
        )

    def first_use(self, completed_at: float, used_at: float, stalled_since: float | None) -> None:
        """The first use of an entry a fill produced (``completed_at``, monotonic
        seconds). A stream that stalled before completion waited for it;
        otherwise the fill was a prefetch that completed ahead of need."""
        if stalled_since is not None and stalled_since < completed_at:
            self.waits += 1
            self.wait_seconds += completed_at - stalled_since
        else:
            self.prefetch_fills += 1
            self.prefetch_lead_seconds += max(0.0, used_at - completed_at)
