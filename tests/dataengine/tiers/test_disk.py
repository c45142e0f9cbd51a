"""L1 shard cache on real files: atomic verified fills, one fill per shard
under concurrency (threads, and two caches sharing a directory), LRU
eviction within the budget that spares pinned shards, and restart recovery
that discards temporary, truncated and corrupted files."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from dataengine.shards import ShardEntry
from dataengine.tiers.disk import DiskCache, ShardLease

SIZE = 256 << 10


class Source:
    """Shard-like files on a pretend shared filesystem, and a byte counter."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        self.bytes_read = 0
        self._lock = threading.Lock()

    def add(self, shard_id: int, size: int = SIZE) -> ShardEntry:
        data = hashlib.sha256(str(shard_id).encode()).digest() * (size // 32)
        path = self.root / f"shard-{shard_id:05d}.lmdb"
        path.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        return ShardEntry(shard_id, path.name, 0, 1, len(data), sha)

    def path(self, shard: ShardEntry) -> Path:
        return self.root / shard.file

    def on_read(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_read += nbytes


@pytest.fixture
def src(tmp_path: Path) -> Source:
    return Source(tmp_path / "l2")


def _cache(tmp_path: Path, src: Source, budget: int, **kwargs) -> DiskCache:
    return DiskCache(tmp_path / "l1", budget, on_source_read=src.on_read, **kwargs)


def _held_on_disk(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _use(cache: DiskCache, lease: ShardLease, stalled_since: float | None = None):
    location = lease.future.result(timeout=30)
    cache.use(lease, stalled_since)
    return location


def test_fill_copies_a_verified_shard_once_then_hits(tmp_path: Path, src: Source) -> None:
    shard = src.add(0)
    with _cache(tmp_path, src, 10 * SIZE) as cache:
        first = cache.lease(shard, src.path(shard))
        location = _use(cache, first)
        assert location.tier == "L1" and location.fallback == src.path(shard)
        assert location.path == tmp_path / "l1" / f"{shard.sha256}.lmdb"
        assert location.path.read_bytes() == src.path(shard).read_bytes()
        second = cache.lease(shard, src.path(shard))
        assert second.future.done() and _use(cache, second) == location
        cache.release(first)
        cache.release(second)
        c = cache.counters()
    assert (c.fills, c.misses, c.hits, c.entries, c.bytes_held) == (1, 1, 1, 1, SIZE)
    assert c.fill_seconds_total > 0
    assert src.bytes_read == SIZE
    assert not list((tmp_path / "l1").glob("*.tmp"))


def test_concurrent_leases_of_one_shard_read_l2_once(tmp_path: Path, src: Source) -> None:
    shard = src.add(0, size=8 << 20)
    barrier = threading.Barrier(8)
    locations = []
    with _cache(tmp_path, src, 64 << 20) as cache:

        def lease() -> None:
            barrier.wait()
            locations.append(_use(cache, cache.lease(shard, src.path(shard))))

        threads = [threading.Thread(target=lease) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        c = cache.counters()
    assert len(set(locations)) == 1 and locations[0].tier == "L1"
    assert c.fills == 1 and src.bytes_read == shard.size_bytes


def test_two_caches_sharing_a_directory_fill_a_shard_once(tmp_path: Path, src: Source) -> None:
    """Two engines on one node: the flock stripe serializes their fills and
    the second adopts the first's file after checking its SHA-256."""
    shard = src.add(0, size=8 << 20)
    barrier = threading.Barrier(2)
    results = []
    with _cache(tmp_path, src, 64 << 20) as a, _cache(tmp_path, src, 64 << 20) as b:

        def lease(cache: DiskCache) -> None:
            barrier.wait()
            results.append(_use(cache, cache.lease(shard, src.path(shard))))

        threads = [threading.Thread(target=lease, args=(c,)) for c in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        fills = a.counters().fills + b.counters().fills
    assert [r.tier for r in results] == ["L1", "L1"]
    assert fills == 1 and src.bytes_read == shard.size_bytes


def test_eviction_is_lru_within_budget_and_spares_pinned_shards(
    tmp_path: Path, src: Source
) -> None:
    a, b, c, d = (src.add(i) for i in range(4))
    with _cache(tmp_path, src, int(2.5 * SIZE)) as cache:
        pinned = cache.lease(a, src.path(a))
        _use(cache, pinned)
        idle = cache.lease(b, src.path(b))
        _use(cache, idle)
        cache.release(idle)
        third = cache.lease(c, src.path(c))  # room for 2: evicts b (idle), not a (pinned)
        assert _use(cache, third).tier == "L1"
        names = {p.name for p in (tmp_path / "l1").glob("*.lmdb")}
        assert names == {f"{a.sha256}.lmdb", f"{c.sha256}.lmdb"}
        assert _held_on_disk(tmp_path / "l1") <= cache.budget_bytes
        # a and c pinned, budget full: d is read from L2 directly, nothing evicted.
        direct = cache.lease(d, src.path(d))
        assert _use(cache, direct).tier == "L2"
        counters = cache.counters()
        assert (counters.evictions, counters.entries, counters.bytes_held) == (1, 2, 2 * SIZE)
        cache.release(pinned)
        again = cache.lease(d, src.path(d))  # a is idle now: evicted for d
        assert _use(cache, again).tier == "L1"
        assert not (tmp_path / "l1" / f"{a.sha256}.lmdb").exists()
        assert _held_on_disk(tmp_path / "l1") <= cache.budget_bytes


def test_a_shard_larger_than_the_budget_is_read_from_l2(tmp_path: Path, src: Source) -> None:
    big = src.add(0, size=2 * SIZE)
    with _cache(tmp_path, src, SIZE) as cache:
        lease = cache.lease(big, src.path(big))
        location = _use(cache, lease)
        assert location.tier == "L2" and location.path == src.path(big)
        assert cache.counters().misses == 1
    assert src.bytes_read == 0 and not list((tmp_path / "l1").glob("*.lmdb"))


def test_restart_drops_tmp_truncated_and_corrupt_files_and_reuses_good_ones(
    tmp_path: Path, src: Source
) -> None:
    shards = [src.add(i) for i in range(3)]
    with _cache(tmp_path, src, 10 * SIZE) as cache:
        for s in shards:
            _use(cache, cache.lease(s, src.path(s)))
    assert src.bytes_read == 3 * SIZE
    l1 = tmp_path / "l1"
    truncated, flipped, good = (l1 / f"{s.sha256}.lmdb" for s in shards)
    os.truncate(truncated, SIZE // 3)
    data = bytearray(flipped.read_bytes())
    data[SIZE // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    crashed = l1 / f"{shards[0].sha256}.lmdb.4242-deadbeef.tmp"
    crashed.write_bytes(b"half a shard")
    src.bytes_read = 0
    with _cache(tmp_path, src, 10 * SIZE) as cache:
        assert not crashed.exists()
        assert cache.counters().entries == 3  # indexed, not trusted yet
        leases = [cache.lease(s, src.path(s)) for s in shards]
        tiers = [_use(cache, lease).tier for lease in leases]
        c = cache.counters()
    assert tiers == ["L1", "L1", "L1"]
    assert (c.fills, c.hits, c.misses) == (2, 1, 2)  # the good file was reused
    assert src.bytes_read == 2 * SIZE
    for s, path in zip(shards, (truncated, flipped, good), strict=True):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == s.sha256


def test_a_corrupt_shared_copy_is_served_from_l2_and_not_copied_again(
    tmp_path: Path, src: Source
) -> None:
    shard = src.add(0)
    wrong = ShardEntry(0, shard.file, 0, 1, shard.size_bytes, "0" * 64)
    with _cache(tmp_path, src, 10 * SIZE) as cache:
        assert _use(cache, cache.lease(wrong, src.path(shard))).tier == "L2"
        assert _use(cache, cache.lease(wrong, src.path(shard))).tier == "L2"
        assert cache.counters().fills == 0
    assert src.bytes_read == SIZE  # one failed copy, no retry
    assert [p.name for p in (tmp_path / "l1").iterdir()] == ["locks"]


def test_prefetch_lead_and_waits(tmp_path: Path, src: Source) -> None:
    early, late = src.add(0), src.add(1)
    with _cache(tmp_path, src, 10 * SIZE) as cache:
        lease = cache.lease(early, src.path(early))
        lease.future.result(timeout=30)
        time.sleep(0.02)
        cache.use(lease)  # nobody waited: a prefetch fill, completed ~20 ms ahead
        stalled = time.monotonic()
        lease = cache.lease(late, src.path(late))
        _use(cache, lease, stalled_since=stalled)  # the stream waited for this one
        c = cache.counters()
    assert (c.fills, c.prefetch_fills, c.waits) == (2, 1, 1)
    assert c.prefetch_lead_seconds_total >= 0.02
    assert c.wait_seconds_total > 0


def test_budget_zero_and_bad_arguments(tmp_path: Path, src: Source) -> None:
    shard = src.add(0)
    with _cache(tmp_path, src, 0) as cache:
        assert _use(cache, cache.lease(shard, src.path(shard))).tier == "L2"
    with pytest.raises(ValueError, match="budget_bytes"):
        DiskCache(tmp_path, -1)
    with pytest.raises(ValueError, match="fill_threads"):
        DiskCache(tmp_path, 1, fill_threads=0)
