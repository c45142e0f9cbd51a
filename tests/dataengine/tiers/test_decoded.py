"""The decode cache on real files: atomic checksummed entries, a start-up
scan that drops interrupted writes and trims to the budget, LRU eviction
that spares pinned entries, adoption of files another engine wrote, and
rate-limited warnings for writes that failed."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dataengine.errors import DataLossError
from dataengine.pipeline.stored import compress_blob, decode_prefix, encode_prefix
from dataengine.tiers.decoded import DECODED_DIR, DecodeCache, read_entry, write_entry

KEY, FINGERPRINT = "0123456789abcdef", "f" * 64


def _value(sample_id: int, size: int = 4096) -> bytes:
    """A prefix value of ``sample_id`` (incompressible, about ``size`` bytes)."""
    rng = np.random.default_rng(sample_id)
    arrays = {
        "hu": rng.integers(-1000, 1000, size // 2, dtype=np.int16),
        "wave": np.zeros((12, 4), np.float16),
        "tokens": np.arange(3, dtype=np.int16),
        "present": np.ones(2, np.uint8),
    }
    return compress_blob(encode_prefix(sample_id, arrays))


def _cache(root: Path, budget: int) -> DecodeCache:
    return DecodeCache(root, budget, {"ds": FINGERPRINT})


def _put(cache: DecodeCache, sample_id: int, mtime: float | None = None) -> Path:
    """What a worker does after a decode, then the front's admission."""
    path = cache.path("ds", KEY, sample_id)
    value = _value(sample_id)
    write_entry(path, value)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    cache.admit(path, len(value), 0.01)
    return path


def test_an_entry_round_trips_and_damage_is_detected(tmp_path: Path) -> None:
    path = _cache(tmp_path, 1 << 20).path("ds", KEY, 5000)
    assert path.parts[-3:] == (FINGERPRINT, "4", "5000.zst")  # 1024 entries per folder
    value = _value(5000)
    write_entry(path, value)
    assert [p.name for p in path.parent.iterdir()] == ["5000.zst"]  # no temporary left
    blob, size = read_entry(path, 5000)
    assert size == len(value) and decode_prefix(blob, 5000)["tokens"].tolist() == [0, 1, 2]
    damaged = bytearray(value)
    damaged[len(damaged) // 2] ^= 0x02
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataLossError, match="checksum"):
        read_entry(path, 5000)
    path.write_bytes(value[:-9])
    with pytest.raises(DataLossError):
        read_entry(path, 5000)
    path.write_bytes(_value(4999))
    with pytest.raises(DataLossError, match="holds sample 4999, not 5000"):
        decode_prefix(read_entry(path, 5000)[0], 5000)


@pytest.fixture
def full_disk(mount_tmpfs: Callable[[str], Path | None]) -> Path:
    """An 8 KiB tmpfs (two pages)."""
    mount = mount_tmpfs("8k")
    if mount is None:
        pytest.skip("cannot mount a tmpfs here")
    return mount


def test_a_write_the_disk_cannot_hold_leaves_no_file(full_disk: Path) -> None:
    path = full_disk / "k" / "f" / "0" / "7.zst"
    with pytest.raises(OSError, match="No space left"):
        write_entry(path, _value(7, size=64 << 10))
    assert [p for p in full_disk.rglob("*") if p.is_file()] == []


def test_start_drops_interrupted_writes_and_keeps_the_newest_within_budget(
    tmp_path: Path,
) -> None:
    first = _cache(tmp_path, 1 << 20).start()
    paths = [_put(first, sid, mtime=1_000_000 + sid) for sid in range(4)]
    leftover = paths[0].with_name("0.zst.123-cafe.tmp")
    leftover.write_bytes(b"partial")
    os.utime(leftover, (1_000_000, 1_000_000))  # a crash's, long ago
    in_progress = paths[1].with_name("1.zst.456-beef.tmp")  # a peer writing now
    in_progress.write_bytes(b"being written")
    (tmp_path / DECODED_DIR / "notes.txt").write_text("not an entry")
    size = max(p.stat().st_size for p in paths)
    again = _cache(tmp_path, 2 * size + size // 2).start()
    assert not leftover.exists() and in_progress.exists()
    assert [p.exists() for p in paths] == [False, False, True, True]  # oldest evicted
    c = again.counters()
    kept = paths[2].stat().st_size + paths[3].stat().st_size
    assert (c.entries, c.bytes_held, c.evictions) == (2, kept, 2)
    assert (tmp_path / DECODED_DIR / "notes.txt").exists()


def test_lru_eviction_spares_pinned_entries(tmp_path: Path) -> None:
    size = len(_value(0))
    cache = _cache(tmp_path, 2 * size + 100).start()
    a, b = _put(cache, 0), _put(cache, 1)
    assert cache.pin("ds", KEY, 0) == a  # in use: also the most recently used
    c = _put(cache, 2)  # evicts 1, the least recently used unpinned
    assert (a.exists(), b.exists(), c.exists()) == (True, False, True)
    assert cache.pin("ds", KEY, 1) is None
    assert cache.pin("ds", KEY, 2) == c
    d = _put(cache, 3)  # no room beside two pinned entries: not kept
    assert not d.exists() and cache.pin("ds", KEY, 3) is None
    cache.unpin(a)
    _put(cache, 3)
    assert not a.exists() and cache.counters().entries == 2
    counters = cache.counters()
    assert counters.bytes_held <= counters.budget_bytes and counters.evictions == 2
    assert counters.fills == 4


def test_an_entry_another_engine_wrote_is_adopted(tmp_path: Path) -> None:
    mine = _cache(tmp_path, 1 << 20).start()
    peer = _cache(tmp_path, 1 << 20).start()
    path = _put(peer, 9)
    assert mine.pin("ds", KEY, 9) == path
    assert mine.counters().entries == 1 and mine.counters().bytes_held == path.stat().st_size
    other = DecodeCache(tmp_path, 1 << 20, {"ds": "e" * 64}).start()
    assert other.pin("ds", KEY, 9) is None  # other source shards: never matches


def test_failed_writes_warn_at_most_once_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = _cache(tmp_path, 1 << 20)
    with caplog.at_level(logging.WARNING, logger="dataengine.tiers.decoded"):
        for _ in range(5):
            cache.write_failed("OSError: [Errno 28] No space left on device")
    assert len(caplog.records) == 1
    assert "1 entry not written (OSError: [Errno 28]" in caplog.records[0].getMessage()
