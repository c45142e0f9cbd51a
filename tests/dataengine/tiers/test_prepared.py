"""The gate in front of a prepared view's shard: an L1 copy passes as it is
(its fill verified it), a shard read from L2 is hashed once per process
before any of its values is served, and a shard that fails is logged once
and never served."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
from pathlib import Path

import pytest

from dataengine.shards import ShardEntry
from dataengine.tiers.disk import ShardLocation
from dataengine.tiers.prepared import PreparedTier


def _shard(path: Path, data: bytes) -> ShardEntry:
    path.write_bytes(data)
    return ShardEntry(0, path.name, 0, 2, len(data), hashlib.sha256(data).hexdigest())


def _located(where: ShardLocation) -> cf.Future[ShardLocation]:
    future: cf.Future[ShardLocation] = cf.Future()
    future.set_result(where)
    return future


def _never_bad(_key: str) -> bool:
    return False


def test_a_shard_on_l2_is_served_once_verified(tmp_path: Path) -> None:
    path = tmp_path / "shard-00000.lmdb"
    shard = _shard(path, b"view" * 4096)
    read: list[int] = []
    with PreparedTier({}, on_source_read=read.append) as views:
        gates = [views.gate(shard, path, _located(ShardLocation(path, "L2")), _never_bad)]
        gates.append(views.gate(shard, path, _located(ShardLocation(path, "L2")), _never_bad))
        assert [g.result(timeout=30) for g in gates] == [ShardLocation(path, "L2")] * 2
    assert read == [shard.size_bytes]  # hashed once for both


def test_a_shard_that_fails_is_never_served_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "shard-00000.lmdb"
    shard = _shard(path, b"view" * 4096)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    logs = caplog.at_level(logging.ERROR, logger="dataengine.tiers.prepared")
    with logs, PreparedTier({}) as views:
        for _ in range(3):
            gate = views.gate(shard, path, _located(ShardLocation(path, "L2")), _never_bad)
            assert gate.result(timeout=30) is None
    assert len(caplog.records) == 1
    assert "SHA-256 differs" in caplog.records[0].getMessage()


def test_an_l1_copy_passes_and_a_corrupt_fill_does_not(tmp_path: Path) -> None:
    path = tmp_path / "shard-00000.lmdb"
    shard = _shard(path, b"view" * 4096)
    copy = ShardLocation(tmp_path / f"{shard.sha256}.lmdb", "L1", fallback=path)
    with PreparedTier({}) as views:
        gate = views.gate(shard, path, _located(copy), _never_bad)
        # No fallback to the unverified L2 file: a vanished copy means a decode.
        assert gate.result(timeout=30) == ShardLocation(copy.path, "L1")
        pending: cf.Future[ShardLocation] = cf.Future()
        gate = views.gate(shard, path, pending, lambda key: key == shard.sha256)
        assert not gate.done()  # waits for the L1 fill like a source shard
        pending.set_result(ShardLocation(path, "L2"))  # the fill found it corrupt
        assert gate.result(timeout=30) is None
