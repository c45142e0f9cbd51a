"""The storage tiers in real engine processes on loopback, over real files:
L2 (the dataset) is only read, L1 (``--cache-dir``) and L0 (``--ram-cache``)
serve later epochs without shared-FS reads, budgets hold with eviction, a
crashed or corrupted L1 is repaired, never served; and every sample is the
same bytes as a no-cache engine's, since augmentation depends only on
``(seed, epoch, sample_id)``."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from dataengine.client import EngineClient
from dataengine.order import epoch_order
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.shards import Manifest
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

SEED = 5
SPEC = PipelineSpec(augment=Augmentations(flip=True, random_crop=True, hu_jitter=30.0))
Samples = dict[int, dict[str, bytes]]  # sample id -> tensor name -> raw bytes
TIERS = ("L0", "L1", "L1d", "L2")


def _fetch_epoch(address: str, epoch: int, *, batch: int = 4, streams: int = 3) -> Samples:
    """One epoch the way a client asks: explicit ids in batches, ``streams``
    StreamSamples calls in flight (the credit window)."""
    order = epoch_order(12, SEED, epoch).tolist()
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    out: Samples = {}
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.DataEngineStub(channel)

        def call(ids: list[int]) -> list[pb.Sample]:
            request = pb.SampleRequest(
                pipeline=SPEC.to_proto(), seed=SEED, epoch=epoch, sample_ids=ids
            )
            return list(stub.StreamSamples(request, timeout=120))

        with cf.ThreadPoolExecutor(streams) as pool:
            for samples in pool.map(call, batches):
                for s in samples:
                    assert not s.HasField("error"), s.error.message
                    out[s.sample_id] = {t.name: t.data for t in s.tensors}
    assert sorted(out) == list(range(12))
    return out


def _tiers(address: str) -> dict[str, pb.CacheStats]:
    with grpc.insecure_channel(address) as channel:
        stats = pb_grpc.DataEngineStub(channel).GetStats(pb.GetStatsRequest(), timeout=10)
    return {c.tier: c for c in stats.caches}


def _dir_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _snapshot(directory: Path) -> dict[str, tuple[int, int, str]]:
    """Every file's size, mtime (ns) and SHA-256."""
    return {
        str(p.relative_to(directory)): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(packed_dataset: Path, start_module_engine: Callable) -> dict[int, Samples]:
    """Epochs 0 and 1 from an engine with no cache at all (L0 off, no L1)."""
    proc = start_module_engine([packed_dataset], "--ram-cache", "0")
    return {epoch: _fetch_epoch(proc.address, epoch) for epoch in (0, 1)}


@pytest.fixture
def read_only_dataset(packed_dataset: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the dataset with every write permission removed."""
    copy = tmp_path / "l2" / "synthetic"
    shutil.copytree(packed_dataset, copy)
    for p in [copy, *copy.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    yield copy
    for p in [copy, *copy.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_second_epoch_is_served_from_l1_without_shared_fs_reads(
    read_only_dataset: Path, start_engine, tmp_path: Path, reference: dict[int, Samples]
) -> None:
    before = _snapshot(read_only_dataset)
    manifest = Manifest.load(read_only_dataset)
    cache = tmp_path / "nvme"
    proc = start_engine(  # the decode cache off: this test is about shards in L1
        [read_only_dataset],
        *("--cache-dir", str(cache), "--disk-cache", "64M", "--decode-cache", "0"),
        *("--ram-cache", "0"),
    )
    with EngineClient(proc.address, pipeline=SPEC, seed=SEED, batch_size=3) as client:
        first = list(client.batches(epochs=1))
        t1 = _tiers(proc.address)
    assert sorted(sid for b in first for sid in b["sample_id"].tolist()) == list(range(12))
    for batch in first:  # the client's batches hold the no-cache engine's bytes
        for row, sid in enumerate(batch["sample_id"].tolist()):
            assert batch["image"][row].numpy().tobytes() == reference[0][sid]["image"]
    # Epoch 0: each shard copied from L2 exactly once (concurrent streams
    # share the fill), then every sample read from the L1 copy.
    assert (t1["L2"].hits, t1["L2"].bytes_read) == (3, manifest.size_bytes)
    assert (t1["L1"].fills, t1["L1"].entries, t1["L1"].bytes_held) == (3, 3, manifest.size_bytes)
    # A sample misses when its shard was not in L1 yet as its request came;
    # the client's later batches find the shards already copied.
    assert t1["L1"].hits + t1["L1"].misses == 12 and t1["L1"].misses >= 3
    assert t1["L1"].prefetch_fills + t1["L1"].waits == 3 and t1["L1"].fill_mean_ms > 0
    # Epoch 1: every sample from node-local disk, not one byte from L2.
    assert _fetch_epoch(proc.address, 1) == reference[1]
    t2 = _tiers(proc.address)
    assert (t2["L2"].hits, t2["L2"].bytes_read) == (t1["L2"].hits, t1["L2"].bytes_read)
    assert (t2["L1"].hits - t1["L1"].hits, t2["L1"].fills) == (12, 3)
    assert t2["L1"].bytes_read > t1["L1"].bytes_read > 0
    for shard in manifest.shards:
        copy = cache / f"{shard.sha256}.lmdb"
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == shard.sha256
    assert _snapshot(read_only_dataset) == before  # L2 never written
    human = subprocess.run(
        [sys.executable, "-m", "dataengine", "stats", proc.address],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = {w[0]: w for line in human.splitlines() if (w := line.split()) and w[0] in TIERS}
    assert sorted(rows) == ["L0", "L1", "L1d", "L2"]
    assert rows["L1"][1:3] == [str(t2["L1"].hits), str(t2["L1"].misses)]
    assert rows["L2"][8] == f"{manifest.size_bytes / 1e6:.1f}"  # MB read from L2


def test_budgets_smaller_than_the_dataset_hold_and_every_sample_is_correct(
    packed_dataset: Path, start_engine, tmp_path: Path, reference: dict[int, Samples]
) -> None:
    manifest = Manifest.load(packed_dataset)
    shard_bytes = max(s.size_bytes for s in manifest.shards)
    disk_budget = shard_bytes * 3 // 2  # one and a half shards of three
    ram_budget = 3 * SPEC.prefix_bytes  # about three decoded samples of twelve
    cache = tmp_path / "nvme"
    proc = start_engine(
        [packed_dataset],
        *("--cache-dir", str(cache), "--disk-cache", str(disk_budget), "--decode-cache", "0"),
        *("--ram-cache", str(ram_budget)),
    )
    largest = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal largest
        while not stop.is_set():
            largest = max(largest, _dir_bytes(cache))
            stop.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        # One stream at a time: a shard a stream holds is never evicted, so
        # sequential requests are what turns the small L1 over.
        for epoch in (0, 1):
            assert _fetch_epoch(proc.address, epoch, batch=2, streams=1) == reference[epoch]
    finally:
        stop.set()
        watcher.join()
    t = _tiers(proc.address)
    assert 0 < largest <= disk_budget and _dir_bytes(cache) <= disk_budget
    assert 0 < t["L1"].bytes_held <= disk_budget and t["L1"].evictions > 0
    assert 0 < t["L0"].bytes_held <= ram_budget and t["L0"].evictions > 0
    assert t["L0"].hits + t["L0"].misses == 24
    # Whatever L1 could not hold was read from L2 directly: more than one pass.
    assert t["L2"].bytes_read > manifest.size_bytes
    assert not list(cache.glob("*.tmp"))


def test_crashed_and_corrupted_l1_files_are_discarded_and_refilled_then_l0_serves(
    packed_dataset: Path, start_engine, tmp_path: Path, reference: dict[int, Samples]
) -> None:
    manifest = Manifest.load(packed_dataset)
    truncated, flipped, good = manifest.shards
    cache = tmp_path / "nvme"
    cache.mkdir()
    for shard in manifest.shards:  # what an earlier engine left behind
        shutil.copyfile(packed_dataset / shard.file, cache / f"{shard.sha256}.lmdb")
    os.truncate(cache / f"{truncated.sha256}.lmdb", truncated.size_bytes // 2)
    damaged = bytearray((cache / f"{flipped.sha256}.lmdb").read_bytes())
    damaged[len(damaged) // 2] ^= 0x10
    (cache / f"{flipped.sha256}.lmdb").write_bytes(bytes(damaged))
    partial = cache / f"{good.sha256}.lmdb.999-0badf00d.tmp"
    partial.write_bytes(b"\0" * 4096)

    proc = start_engine([packed_dataset], "--cache-dir", str(cache), "--disk-cache", "64M")
    assert not partial.exists()
    assert _fetch_epoch(proc.address, 0) == reference[0]
    t = _tiers(proc.address)
    assert t["L1"].fills == 2  # the truncated and the flipped shard, refilled
    assert t["L2"].bytes_read == truncated.size_bytes + flipped.size_bytes
    # Every sample is an L1 lookup. The good file is reused (hits); each refilled
    # shard misses at least once, and whether its later samples hit depends on
    # whether their request came after the fill finished.
    assert t["L1"].hits + t["L1"].misses == manifest.num_samples
    assert t["L1"].hits >= good.num_samples and t["L1"].misses >= 2
    for shard in manifest.shards:
        path = cache / f"{shard.sha256}.lmdb"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard.sha256
    assert any("SHA-256 differs from the manifest" in line for line in proc.output)
    assert any("truncated" in line for line in proc.output)
    # Epoch 1 re-augments the decoded prefixes held in L0: no read at all.
    assert _fetch_epoch(proc.address, 1) == reference[1]
    t1 = _tiers(proc.address)
    assert (t1["L0"].hits, t1["L0"].misses, t1["L0"].fills) == (12, 12, 12)
    assert t1["L2"].bytes_read == t["L2"].bytes_read
    assert (t1["L1"].hits, t1["L1"].misses, t1["L1"].bytes_read) == (
        t["L1"].hits,
        t["L1"].misses,
        t["L1"].bytes_read,
    )


BIG = PipelineSpec(image_slices=16, image_resize=384, image_crop=64)


def _front_rss_growth(address: str, pid: int) -> int:
    """Bytes the engine's front process grew while serving the dataset
    twice with ``BIG`` prefixes (about 9.5 MB each), after a warm-up epoch."""
    front = psutil.Process(pid)
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.DataEngineStub(channel)
        list(stub.StreamSamples(pb.SampleRequest(sample_ids=range(12)), timeout=120))
        base = front.memory_info().rss
        for epoch in (0, 1):
            for first in range(0, 12, 4):
                ids = range(first, first + 4)
                request = pb.SampleRequest(sample_ids=ids, epoch=epoch, pipeline=BIG.to_proto())
                samples = list(stub.StreamSamples(request, timeout=120))
                assert [s.HasField("error") for s in samples] == [False] * 4
        return front.memory_info().rss - base


def test_ram_budget_bounds_the_front_process_memory(packed_dataset: Path, start_engine) -> None:
    blob = BIG.prefix_bytes
    budget = 2 * blob
    # Results in flight (a window of 4 samples, each carrying its prefix back
    # from the worker) plus allocator slack are not cache: 4 blobs + 16 MiB.
    overhead = 4 * blob + (16 << 20)
    proc = start_engine([packed_dataset], "--ram-cache", str(budget))
    growth = _front_rss_growth(proc.address, proc.proc.pid)
    l0 = _tiers(proc.address)["L0"]
    assert l0.bytes_held <= budget and l0.fills >= 24 and l0.evictions >= 22
    # 24 prefixes (about 230 MB) passed through the front; it kept at most
    # its budget of them (a 1 GiB budget keeps all 12: about 130 MB growth).
    assert 24 * blob > 2 * (budget + overhead)
    assert growth <= budget + overhead, (growth, budget + overhead)


def test_workers_follow_the_path_they_are_given(packed_dataset: Path, tmp_path: Path) -> None:
    """In a worker: an L1 path is read when present, reopened when replaced by
    a new file, and its L2 fallback is read when it has vanished."""
    from dataengine.server.tasks import SampleTask, close_readers
    from dataengine.tiers.disk import ShardLocation

    shard = Manifest.load(packed_dataset).shards[0]
    l2 = packed_dataset / shard.file
    l1 = tmp_path / f"{shard.sha256}.lmdb"
    shutil.copyfile(l2, l1)
    task = SampleTask("synthetic", 1, SPEC, SEED, 0, shard=ShardLocation(l1, "L1", l2))
    try:
        _follow_paths(task, l1, l2)
    finally:
        close_readers()  # the shared fixture's shard must not stay open in this process


def _follow_paths(task, l1: Path, l2: Path) -> None:
    from dataengine.server.tasks import produce_sample

    first = produce_sample(task)
    assert first.error_kind is None and first.read_tier == "L1" and first.read_bytes > 0
    l1.unlink()  # evicted, then refilled under the same name: a new inode
    shutil.copyfile(l2, l1)
    again = produce_sample(task)
    assert again.read_tier == "L1" and again.sample_bytes == first.sample_bytes
    l1.unlink()
    fallback = produce_sample(task)
    assert fallback.read_tier == "L2" and fallback.sample_bytes == first.sample_bytes
    assert fallback.read_bytes == first.read_bytes


def test_the_cache_dir_must_not_overlap_a_dataset(packed_dataset: Path, tmp_path: Path) -> None:
    from dataengine.errors import ConfigError
    from dataengine.server import ServerConfig

    for inside in (packed_dataset, packed_dataset / "cache", packed_dataset.parent):
        with pytest.raises(ConfigError, match=r"^server\.cache_dir: .* overlaps dataset"):
            ServerConfig(datasets=(packed_dataset,), cache_dir=inside)
    with pytest.raises(ConfigError, match=r"^server\.disk_cache_bytes: needs a cache_dir"):
        ServerConfig(datasets=(packed_dataset,), disk_cache_bytes=1 << 30)
    ok = ServerConfig(datasets=(packed_dataset,), cache_dir=tmp_path / "c", disk_cache_bytes=0)
    assert ok.ahead == ok.window == 2 * ok.worker_count


def test_prometheus_shows_every_tier_figure() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from dataengine.server.stats import PrometheusCollector, StatsRecorder
    from dataengine.tiers import CacheCounters, RamCache

    ram = RamCache(1 << 20)
    ram.put("a", bytes(1000), prefetch=True, fill_seconds=0.25)
    assert ram.get("a") is not None and ram.get("b") is None
    stats = StatsRecorder("e", 1, ["d"])
    stats.tiers = lambda: {
        "L0": ram.counters(),
        "L1": CacheCounters(),
        "L2": CacheCounters(hits=3, bytes_read=4096),
    }
    registry = CollectorRegistry()
    registry.register(PrometheusCollector(stats))
    text = generate_latest(registry).decode()
    for line in (
        'medstream_engine_cache_hits_total{tier="L0"} 1.0',
        'medstream_engine_cache_misses_total{tier="L0"} 1.0',
        'medstream_engine_cache_bytes_read_total{tier="L0"} 1000.0',
        'medstream_engine_cache_bytes_held{tier="L0"} 1256.0',
        'medstream_engine_cache_fills_total{tier="L0"} 1.0',
        'medstream_engine_cache_fill_mean_ms{tier="L0"} 250.0',
        'medstream_engine_cache_prefetch_fills_total{tier="L0"} 1.0',
        'medstream_engine_cache_waits_total{tier="L1"} 0.0',
        'medstream_engine_cache_bytes_read_total{tier="L2"} 4096.0',
    ):
        assert line in text, line
