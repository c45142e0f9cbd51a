"""The three tiers together, as one request sees them.

When a request arrives, ``TierStack.claim`` turns each of its sample ids into
a ``Claim``: an L0 pin when the decoded prefix is in RAM (so it stays there
until sent), otherwise a lease on its shard, which starts the L1 fill (or
reuse check) in the background right away: this is the prefetch of shards
driven by the ids the client sent ahead of need. Workers then read each
sample from where its lease resolved (L1 or L2), and ``done`` books the bytes
they read against the right tier.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dataengine.tiers.counters import CacheCounters
from dataengine.tiers.disk import DiskCache, ShardLease, ShardLocation
from dataengine.tiers.ram import RamCache
from dataengine.tiers.shared import SharedTier

__all__ = ["Claim", "TierStack"]

L0Key = tuple[str, int, str]


@dataclass(eq=False)
class Claim:
    """One requested sample's hold on the tiers, from request to send.
    ``pinned``: its prefix is pinned in L0; ``lease``: its shard, when the
    sample may have to be read; ``counted``: its L0 lookup was counted (when
    a decode ahead started); ``reserved``: L0 bytes set aside for that decode."""

    sample_id: int
    key: L0Key
    pinned: bool = False
    lease: ShardLease | None = None
    counted: bool = False
    reserved: int = 0

    def ready(self) -> bool:
        """Whether it can go to a worker now (no fill to wait for)."""
        return self.pinned or self.lease is None or self.lease.future.done()


class TierStack:
    """L0 (``ram``), L1 (``disk``, None when there is no ``--cache-dir``) and
    L2 (``shared``). ``counters`` gives each tier's figures by level name."""

    def __init__(self, ram: RamCache, disk: DiskCache | None, shared: SharedTier) -> None:
        self.ram = ram
        self.disk = disk
        self.shared = shared

    def counters(self) -> dict[str, CacheCounters]:
        return {
            "L0": self.ram.counters(),
            "L1": self.disk.counters() if self.disk is not None else CacheCounters(),
            "L2": self.shared.counters(),
        }

    def claim(self, dataset: str, sample_ids: Iterable[int], prefix_key: str) -> list[Claim]:
        """Claims in request order; starts the shard fills they need."""
        use_ram = self.ram.budget_bytes > 0
        claims = []
        for sid in sample_ids:
            c = Claim(int(sid), (dataset, int(sid), prefix_key))
            c.pinned = use_ram and self.ram.pin(c.key)
            if not c.pinned:
                c.lease = self._lease(dataset, c.sample_id)
            claims.append(c)
        return claims

    def _lease(self, dataset: str, sample_id: int) -> ShardLease:
        shard = self.shared.shard_of(dataset, sample_id)
        source = self.shared.path(dataset, shard)
        if self.disk is None:
            return ShardLease.direct(shard.sha256, ShardLocation(source, "L2"))
        return self.disk.lease(shard, source)

    def take_blob(self, claim: Claim, stalled_since: float | None = None) -> bytes | None:
        """The sample's prefix from L0 (its one lookup counted as a hit or a
        miss, unless a decode ahead counted it), unpinning it. On a hit the
        shard lease is no longer needed and is released."""
        blob = None
        if self.ram.budget_bytes > 0:
            blob = self.ram.get(claim.key, stalled_since, count=not claim.counted)
            claim.counted = True
        if claim.pinned:
            self.ram.unpin(claim.key)
            claim.pinned = False
        if blob is not None:
            self._release(claim)
        return blob

    def location(self, claim: Claim, stalled_since: float | None = None) -> ShardLocation:
        """Where a worker reads the sample (its lease must be done)."""
        if claim.lease is None:
            claim.lease = self._lease(claim.key[0], claim.sample_id)
        if self.disk is not None and claim.lease.future.done():
            self.disk.use(claim.lease, stalled_since)
        return claim.lease.future.result()

    def store(self, claim: Claim, blob: bytes, fill_seconds: float) -> None:
        """Keep a prefix a worker decoded for ``claim`` in L0 (if it fits)."""
        if self.ram.budget_bytes > 0:
            self.ram.put(claim.key, blob, fill_seconds=fill_seconds)

    def start_ahead(self, claim: Claim, nbytes: int) -> bool:
        """Whether to decode ``claim`` ahead into L0 now: its shard is ready,
        its prefix is not in L0, and ``nbytes`` fit beside what L0 has pinned
        and reserved (never evicting what a stream will serve next)."""
        if claim.pinned or claim.counted or not claim.ready() or claim.key in self.ram:
            return False
        if not self.ram.reserve(nbytes):
            return False
        self.ram.note_miss()
        claim.counted = True
        claim.reserved = nbytes
        return True

    def finish_ahead(self, claim: Claim, blob: bytes | None, fill_seconds: float) -> bool:
        """Store a decode-ahead result pinned in L0 (its shard lease ends);
        False when it failed or did not fit, and the sample is decoded again."""
        stored = blob is not None and self.ram.put(
            claim.key,
            blob,
            pin=True,
            prefetch=True,
            fill_seconds=fill_seconds,
            reserved=claim.reserved,
        )
        if blob is None:
            self.ram.unreserve(claim.reserved)
        claim.reserved = 0
        if stored:
            claim.pinned = True
            self._release(claim)
        return stored

    def done(self, claim: Claim, read_tier: str | None, read_bytes: int) -> None:
        """A worker finished the sample, having read ``read_bytes`` from
        ``read_tier`` ("L1", "L2" or None): book the read, drop the claim."""
        self.book_read(claim, read_tier, read_bytes)
        self.abandon(claim)

    def book_read(self, claim: Claim, read_tier: str | None, read_bytes: int) -> None:
        """Count a worker's read of ``read_bytes`` from ``read_tier`` for ``claim``."""
        if read_tier == "L1" and self.disk is not None:
            self.disk.add_read(read_bytes)
        elif read_tier == "L2":
            self.shared.add_read(read_bytes)
            lease = claim.lease
            if (
                lease is not None
                and self.disk is not None
                and lease.future.done()
                and lease.future.result().tier == "L1"
            ):  # the worker found the L1 file gone
                self.disk.forget(lease.key)

    def abandon(self, claim: Claim) -> None:
        """Drop whatever the claim still holds (sent, failed or cancelled)."""
        if claim.pinned:
            self.ram.unpin(claim.key)
            claim.pinned = False
        if claim.reserved:
            self.ram.unreserve(claim.reserved)
            claim.reserved = 0
        self._release(claim)

    def _release(self, claim: Claim) -> None:
        if claim.lease is not None and self.disk is not None:
            self.disk.release(claim.lease)
        claim.lease = None
