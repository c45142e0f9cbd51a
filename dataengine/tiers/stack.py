"""How one request finds each of its samples: the lookup, in one place.

Each requested sample's prefix (decode + resample, in stored form) comes from
the first of these sources that has it (``TierStack.claim`` and ``_find``)::

    1. ram           L0: the prefix blob in engine RAM (pinned until sent)
    2. prepared      a prepared view whose key is the request's prefix key;
                     its shard leased through L1 like a source shard, and
                     verified (SHA-256) before any of its values is served
    3. decode_cache  L1d: the prefix value a worker wrote on node-local disk
    4. decoded       the source shard (leased through L1) and a fresh decode;
                     the worker writes the prefix to the decode cache

A ``Claim`` is what a sample holds in those sources from request to send. A
request's path: ``claim`` (at arrival: L0 pins, shard leases that start L1
fills, decode cache pins), ``ready`` (its shard is there and verified; a
view shard that failed falls through to 3 and 4), ``fetch`` (what the worker
reads: the L0 blob, or a view / cache entry with the source shard as the
fallback), ``settle`` (book what the worker read and wrote, and which source
served it), ``done``. A decode ahead uses ``start_ahead`` and
``finish_ahead`` to park the prefix in L0 in between.

Every source yields the same bytes (``pipeline/stored.py``), so augmentation
and serialization never depend on where a prefix came from.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dataengine.shards import ShardEntry
from dataengine.tiers.counters import CacheCounters
from dataengine.tiers.decoded import DecodeCache
from dataengine.tiers.disk import DiskCache, ShardLease, ShardLocation
from dataengine.tiers.prepared import Gate, PreparedTier
from dataengine.tiers.ram import RamCache
from dataengine.tiers.shared import SharedTier

__all__ = [
    "DECODED",
    "DECODE_CACHE",
    "PREPARED",
    "RAM",
    "SOURCES",
    "Claim",
    "Fetch",
    "ReadReport",
    "TierStack",
]

_LOG = logging.getLogger(__name__)

L0Key = tuple[str, int, str]  # (dataset, sample id, prefix key)
RAM, PREPARED, DECODE_CACHE, DECODED = "ram", "prepared", "decode_cache", "decoded"
SOURCES = (PREPARED, DECODE_CACHE, DECODED, RAM)


@dataclass(eq=False)
class Claim:
    """One requested sample's hold on the sources, from request to send.

    ``source``: where its prefix will come (or came) from. ``pinned``: its
    blob is pinned in L0. ``lease``: the shard a worker will read (the view's
    for ``prepared``, the source's for ``decoded``). ``gate``: for
    ``prepared``, the verified location of the view shard (None: not
    servable). ``cached``: the pinned decode cache entry. ``ahead_source``:
    the source of the blob its own decode ahead parked in L0. ``counted``: its L0 lookup was
    counted (when a decode ahead started); ``reserved``: L0 bytes set aside
    for that decode."""

    sample_id: int
    key: L0Key
    source: str = DECODED
    pinned: bool = False
    lease: ShardLease | None = None
    gate: Gate | None = None
    cached: Path | None = None
    ahead_source: str | None = None
    counted: bool = False
    reserved: int = 0


@dataclass(frozen=True)
class Fetch:
    """What a worker reads for one sample, first found wins: ``prefix_blob``
    (L0), a value in the ``prepared`` view shard, the ``cached`` decode cache
    entry, else a fresh decode from the source ``shard`` (also the fallback
    when a view value or a cache entry is bad). ``cache_to``: where a fresh
    decode's prefix value is written (None: decode cache off)."""

    prefix_blob: bytes | None = None
    prepared: ShardLocation | None = None
    cached: Path | None = None
    shard: ShardLocation | None = None
    cache_to: Path | None = None


@dataclass
class ReadReport:
    """What a worker did in the tiers for one sample (it travels back with
    the result). ``source``: which source served the prefix. ``reads``:
    ``(tier, bytes)`` of each shard value read ("L1" or "L2").
    ``l1_vanished``: the L1 file it was sent to was gone. ``cache_read_bytes``
    / ``cache_written`` (bytes, taking ``cache_seconds``) / ``cache_dropped``
    (the entry was gone or corrupt, and deleted) / ``cache_error`` (the write
    failed, why): the decode cache. ``fallback``: why a view value or a cache
    entry was not used."""

    source: str = DECODED
    reads: list[tuple[str, int]] = field(default_factory=list)
    l1_vanished: bool = False
    cache_read_bytes: int = 0
    cache_written: int = 0
    cache_seconds: float = 0.0
    cache_dropped: bool = False
    cache_error: str | None = None
    fallback: str | None = None


class TierStack:
    """The sources of prefixes over the tiers: L0 (``ram``), L1 (``disk``,
    None without ``--cache-dir``), the prepared views (``views``), the decode
    cache (``decoded``, None when off) and L2 (``shared``)."""

    def __init__(
        self,
        ram: RamCache,
        disk: DiskCache | None,
        shared: SharedTier,
        views: PreparedTier | None = None,
        decoded: DecodeCache | None = None,
    ) -> None:
        self.ram = ram
        self.disk = disk
        self.shared = shared
        self.views = views
        self.decoded = decoded

    def counters(self) -> dict[str, CacheCounters]:
        """Each tier's figures by level name (L1d: the decode cache)."""
        return {
            "L0": self.ram.counters(),
            "L1": self.disk.counters() if self.disk is not None else CacheCounters(),
            "L1d": self.decoded.counters() if self.decoded is not None else CacheCounters(),
            "L2": self.shared.counters(),
        }

    # -- the lookup ------------------------------------------------------------

    def claim(self, dataset: str, sample_ids: Iterable[int], prefix_key: str) -> list[Claim]:
        """Claims in request order: each sample's source found, its L0 entry
        or cache entry pinned, its shard leased (starting L1 fills)."""
        use_ram = self.ram.budget_bytes > 0
        claims = []
        for sid in sample_ids:
            c = Claim(int(sid), (dataset, int(sid), prefix_key))
            if use_ram and self.ram.pin(c.key):
                c.source, c.pinned = RAM, True
            else:
                self._find(c)
            claims.append(c)
        return claims

    def _find(self, c: Claim, *, views: bool = True) -> None:
        """Sources 2-4 for a sample not in L0 (``views`` False: skip 2)."""
        dataset, sid, prefix_key = c.key
        if views and self.views is not None:
            found = self.views.shard(dataset, prefix_key, sid)
            if found is not None:
                shard, path = found
                c.source, c.lease = PREPARED, self._lease(shard, path)
                c.gate = self.views.gate(shard, path, c.lease.future, self._known_bad)
                return
        if self.decoded is not None:
            c.cached = self.decoded.pin(dataset, prefix_key, sid)
            if c.cached is not None:
                c.source = DECODE_CACHE
                return
        shard = self.shared.shard_of(dataset, sid)
        c.source, c.lease = DECODED, self._lease(shard, self.shared.path(dataset, shard))

    def _lease(self, shard: ShardEntry, path: Path) -> ShardLease:
        """A lease on any shard file (source or view) through L1 when it is on."""
        if self.disk is None:
            return ShardLease.direct(shard.sha256, ShardLocation(path, "L2"))
        return self.disk.lease(shard, path)

    def _known_bad(self, key: str) -> bool:
        return self.disk is not None and self.disk.is_bad(key)

    def ready(self, c: Claim) -> bool:
        """Whether ``c`` can go to a worker now (no fill or check to wait
        for). A view shard that failed its check sends the sample on to the
        decode cache or the source here."""
        if c.pinned:
            return True
        if c.gate is not None:
            if not c.gate.done():
                return False
            if c.gate.result() is not None:
                return True
            self._release(c)
            self._find(c, views=False)
        return c.lease is None or c.lease.future.done()

    def pending(self, c: Claim) -> cf.Future | None:
        """The future ``c`` waits for (a fill or a check), if any."""
        if c.pinned:
            return None
        if c.gate is not None and not c.gate.done():
            return c.gate
        if c.lease is not None and not c.lease.future.done():
            return c.lease.future
        return None

    def fetch(
        self, c: Claim, stalled_since: float | None = None, *, look_in_ram: bool = True
    ) -> Fetch:
        """What a worker reads for ``c`` (``ready`` must be True). The L0
        lookup happens here, at the last moment, so a prefix another stream
        decoded meanwhile is used (``look_in_ram`` False for a decode ahead,
        which counted its L0 miss already)."""
        if look_in_ram:
            blob = self._take_blob(c, stalled_since)
            if blob is not None:
                return Fetch(prefix_blob=blob)
        cache_to = self._cache_path(c)
        if c.source == PREPARED and c.gate is not None:
            self._use(c, stalled_since)
            return Fetch(prepared=c.gate.result(), shard=self._source_l2(c), cache_to=cache_to)
        if c.source == DECODE_CACHE and c.cached is not None:
            return Fetch(cached=c.cached, shard=self._source_l2(c), cache_to=cache_to)
        if c.lease is None:  # not reached: an L0 pin keeps its blob until taken
            return Fetch(shard=self._source_l2(c), cache_to=cache_to)
        self._use(c, stalled_since)
        return Fetch(shard=c.lease.future.result(), cache_to=cache_to)

    def _take_blob(self, c: Claim, stalled_since: float | None) -> bytes | None:
        """The sample's prefix from L0 (its one lookup counted as a hit or a
        miss, unless a decode ahead counted it), unpinning it. On a hit the
        other holds are no longer needed and are released."""
        blob = None
        if self.ram.budget_bytes > 0:
            blob = self.ram.get(c.key, stalled_since, count=not c.counted)
            c.counted = True
        if c.pinned:
            self.ram.unpin(c.key)
            c.pinned = False
        if blob is not None:
            self._release(c)
        return blob

    def _use(self, c: Claim, stalled_since: float | None) -> None:
        if self.disk is not None and c.lease is not None and c.lease.future.done():
            self.disk.use(c.lease, stalled_since)

    def _source_l2(self, c: Claim) -> ShardLocation:
        dataset, sid, _ = c.key
        shard = self.shared.shard_of(dataset, sid)
        return ShardLocation(self.shared.path(dataset, shard), "L2")

    def _cache_path(self, c: Claim) -> Path | None:
        if self.decoded is None:
            return None
        dataset, sid, prefix_key = c.key
        return self.decoded.path(dataset, prefix_key, sid)

    # -- after the worker --------------------------------------------------------

    def settle(self, c: Claim, report: ReadReport) -> str:
        """Book what a worker did for ``c``: bytes read per tier, decode cache
        hits, misses, writes and bad entries; returns the source that served
        its prefix (an L0 blob decoded ahead counts as its decode's source)."""
        for tier, nbytes in report.reads:
            if tier == "L1" and self.disk is not None:
                self.disk.add_read(nbytes)
            elif tier == "L2":
                self.shared.add_read(nbytes)
        if report.l1_vanished and c.lease is not None and self.disk is not None:
            self.disk.forget(c.lease.key)
        path = self._cache_path(c)
        if self.decoded is not None and path is not None:
            if report.cache_dropped:
                self.decoded.drop(path)
            if report.cache_written:
                self.decoded.admit(path, report.cache_written, report.cache_seconds)
            if report.cache_error is not None:
                self.decoded.write_failed(report.cache_error)
            if report.source == DECODE_CACHE:
                self.decoded.hit(report.cache_read_bytes)
            elif report.source == DECODED:
                self.decoded.miss()
        if report.fallback is not None:
            _LOG.warning(
                "sample %d of %s: %s; decoded from the source instead",
                c.sample_id,
                c.key[0],
                report.fallback,
            )
        if report.source == RAM:
            return c.ahead_source or RAM
        return report.source

    def store(self, c: Claim, blob: bytes, fill_seconds: float) -> None:
        """Keep a prefix a worker produced for ``c`` in L0 (if it fits)."""
        if self.ram.budget_bytes > 0:
            self.ram.put(c.key, blob, fill_seconds=fill_seconds)

    def done(self, c: Claim) -> None:
        """The sample was sent (or failed): drop the claim."""
        self.abandon(c)

    # -- decode ahead --------------------------------------------------------------

    def start_ahead(self, c: Claim, nbytes: int) -> bool:
        """Whether to produce ``c``'s prefix ahead into L0 now: it is ready,
        not in L0, and ``nbytes`` fit beside what L0 has pinned and reserved
        (never evicting what a stream will serve next)."""
        if c.pinned or c.counted or not self.ready(c) or c.key in self.ram:
            return False
        if not self.ram.reserve(nbytes):
            return False
        self.ram.note_miss()
        c.counted = True
        c.reserved = nbytes
        return True

    def finish_ahead(self, c: Claim, blob: bytes | None, fill_seconds: float, source: str) -> bool:
        """Store a decode-ahead result (from ``source``) pinned in L0 (its
        other holds end); False when it failed or did not fit, and the sample
        is produced again."""
        stored = blob is not None and self.ram.put(
            c.key,
            blob,
            pin=True,
            prefetch=True,
            fill_seconds=fill_seconds,
            reserved=c.reserved,
        )
        if blob is None:
            self.ram.unreserve(c.reserved)
        c.reserved = 0
        if stored:
            c.pinned, c.ahead_source = True, source
            self._release(c)
        return stored

    def abandon(self, c: Claim) -> None:
        """Drop whatever the claim still holds (sent, failed or cancelled)."""
        if c.pinned:
            self.ram.unpin(c.key)
            c.pinned = False
        if c.reserved:
            self.ram.unreserve(c.reserved)
            c.reserved = 0
        self._release(c)

    def _release(self, c: Claim) -> None:
        if c.lease is not None and self.disk is not None:
            self.disk.release(c.lease)
        c.lease = None
        c.gate = None
        if c.cached is not None and self.decoded is not None:
            self.decoded.unpin(c.cached)
        c.cached = None
