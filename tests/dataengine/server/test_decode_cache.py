"""The persistent decode cache (L1d) in real engines over real files: what
one engine decoded, a second engine on the same ``--cache-dir`` and a
restarted one serve without decoding, with the same bytes; a corrupt or
partial entry is recomputed, never served; a study that fails to decode is
cached as its error; the budget holds; a full disk is a logged skip."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dataengine.pipeline.stored import decode_prefix
from dataengine.tiers.decoded import DECODED_DIR, read_entry

from .conftest import (
    BAD_STUDY,
    STUDIES,
    engine_stats,
    fetch_epoch,
    sources,
    tier,
)

pytestmark = pytest.mark.slow


def _entries(cache: Path) -> dict[int, Path]:
    """The decode cache's entries by sample id."""
    return {int(p.name.split(".")[0]): p for p in (cache / DECODED_DIR).rglob("*.zst")}


def _only(source: str) -> dict[str, int]:
    """Source counts of an epoch served wholly from ``source``."""
    names = ("prepared", "decode_cache", "decoded", "ram")
    return {name: STUDIES if name == source else 0 for name in names}


def _whole(path: Path, sample_id: int) -> bool:
    """Whether ``path`` holds the complete, checksummed prefix of ``sample_id``."""
    arrays = decode_prefix(read_entry(path, sample_id)[0], sample_id)
    return set(arrays) == {"hu", "wave", "tokens", "present"}


def test_a_second_engine_and_a_restart_skip_the_decode(
    cold_dataset: Path, start_engine: Callable, tmp_path: Path, cold_reference: dict
) -> None:
    cache = tmp_path / "nvme"
    flags = ("--workers", "1", "--cache-dir", str(cache))
    first = start_engine([cold_dataset], *flags)
    second = start_engine([cold_dataset], *flags)  # started before anything was cached
    assert fetch_epoch(first.address) == cold_reference[0]
    assert sources(first.address) == _only("decoded")
    l1d = tier(first.address, "L1d")
    assert (l1d.fills, l1d.entries, l1d.misses, l1d.hits) == (STUDIES, STUDIES, STUDIES, 0)
    assert l1d.fill_mean_ms > 0 and 0 < l1d.bytes_held <= l1d.budget_bytes
    entries = _entries(cache)
    assert sorted(entries) == list(range(STUDIES))
    assert l1d.bytes_held == sum(p.stat().st_size for p in entries.values())
    assert not list(cache.rglob("*.tmp"))
    for sid, path in entries.items():  # complete, checksummed prefix values
        assert _whole(path, sid)
    # Another engine on the same directory finds what the first one wrote.
    assert fetch_epoch(second.address) == cold_reference[0]
    assert sources(second.address)["decode_cache"] == STUDIES
    assert tier(second.address, "L1d").hits == STUDIES
    # A restart finds it too, and epoch 1 re-augments the same prefixes.
    for proc in (first, second):
        assert proc.stop() == 0
    third = start_engine([cold_dataset], *flags)
    assert fetch_epoch(third.address, 1) == cold_reference[1]
    assert sources(third.address) == _only("decode_cache")
    stats = engine_stats(third.address)
    assert {s.stage: s.count for s in stats.stages}["decode"] == 0
    found = tier(third.address, "L1d")
    assert (found.hits, found.misses, found.fills) == (STUDIES, 0, 0)
    assert found.bytes_read == l1d.bytes_held
    human = subprocess.run(
        [sys.executable, "-m", "dataengine", "stats", third.address],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = [line.split() for line in human.splitlines()]
    assert ["dataset", "prepared", "dcache", "decoded", "ram"] in rows
    assert ["cold", "0", str(STUDIES), "0", "0"] in rows


def test_corrupt_and_partial_entries_are_recomputed_never_served(
    cold_dataset: Path, start_engine: Callable, tmp_path: Path, cold_reference: dict
) -> None:
    cache = tmp_path / "nvme"
    flags = ("--workers", "1", "--cache-dir", str(cache))
    first = start_engine([cold_dataset], *flags)
    assert fetch_epoch(first.address) == cold_reference[0]
    assert first.stop() == 0
    entries = _entries(cache)
    flipped, truncated, swapped = entries[0], entries[3], entries[4]
    damaged = bytearray(flipped.read_bytes())
    damaged[len(damaged) // 2] ^= 0x08
    flipped.write_bytes(bytes(damaged))
    truncated.write_bytes(truncated.read_bytes()[:-7])
    swapped.write_bytes(entries[5].read_bytes())  # a whole value, of another sample
    leftover = entries[2].with_name("2.zst.4242-deadbeef.tmp")
    leftover.write_bytes(b"half a write")
    os.utime(leftover, (1_000_000, 1_000_000))  # left by a crash, long ago

    proc = start_engine([cold_dataset], *flags)
    assert not leftover.exists()
    assert fetch_epoch(proc.address) == cold_reference[0]
    assert sources(proc.address) == {
        "prepared": 0,
        "decode_cache": STUDIES - 3,
        "decoded": 3,
        "ram": 0,
    }
    l1d = tier(proc.address, "L1d")
    assert (l1d.hits, l1d.misses, l1d.fills, l1d.entries) == (STUDIES - 3, 3, 3, STUDIES)
    for sid in (0, 3, 4):  # recomputed and written again, whole
        path = _entries(cache)[sid]
        assert _whole(path, sid)
    log = "".join(proc.output)
    assert log.count("decoded from the source instead") == 3
    assert "checksum" in log and "holds sample 5, not 4" in log


def test_a_study_that_fails_is_cached_as_its_error(
    cold_damaged: Path, start_engine: Callable, tmp_path: Path
) -> None:
    cache = tmp_path / "nvme"
    flags = ("--workers", "1", "--cache-dir", str(cache))
    first = start_engine([cold_damaged], *flags)
    fresh = fetch_epoch(first.address)
    assert [(sid, kind) for sid, kind, _ in fresh.lost] == [(BAD_STUDY, "decode")]
    assert first.stop() == 0
    assert BAD_STUDY in _entries(cache)
    again = start_engine([cold_damaged], *flags)
    assert fetch_epoch(again.address) == fresh  # same batches, same error and message
    stats = engine_stats(again.address)
    assert dict(stats.errors) == {"decode": 1}
    assert sources(again.address)["decoded"] == 0
    assert tier(again.address, "L1d").misses == 0


def test_the_budget_holds_with_lru_eviction(
    cold_dataset: Path, start_engine: Callable, tmp_path: Path, cold_reference: dict
) -> None:
    cache = tmp_path / "nvme"
    probe = start_engine([cold_dataset], "--workers", "1", "--cache-dir", str(tmp_path / "probe"))
    fetch_epoch(probe.address)
    entry = max(p.stat().st_size for p in _entries(tmp_path / "probe").values())
    budget = 2 * entry + entry // 2  # two entries of six
    proc = start_engine(
        [cold_dataset], "--workers", "1", "--cache-dir", str(cache), "--decode-cache", str(budget)
    )
    for epoch in (0, 1):
        assert fetch_epoch(proc.address, epoch) == cold_reference[epoch]
    l1d = tier(proc.address, "L1d")
    on_disk = sum(p.stat().st_size for p in _entries(cache).values())
    assert 0 < l1d.bytes_held == on_disk <= budget == l1d.budget_bytes
    assert 2 <= l1d.entries < STUDIES and l1d.evictions >= STUDIES - l1d.entries


@pytest.fixture
def tiny_disk(mount_tmpfs: Callable[[str], Path | None]) -> Path:
    """A 16 KiB tmpfs: room for two entries of ``COLD_SPEC`` (about 6 kB,
    two pages each), not six."""
    mount = mount_tmpfs("16k")
    if mount is None:
        pytest.skip("cannot mount a tmpfs here")
    return mount


def test_a_full_disk_is_a_logged_skip_not_a_failed_sample(
    cold_dataset: Path, start_engine: Callable, tiny_disk: Path, cold_reference: dict
) -> None:
    proc = start_engine(
        [cold_dataset],
        *("--workers", "1", "--cache-dir", str(tiny_disk)),
        *("--disk-cache", "0", "--decode-cache", "64M"),  # a budget the disk cannot hold
    )
    for epoch in (0, 1):
        assert fetch_epoch(proc.address, epoch) == cold_reference[epoch]
    assert dict(engine_stats(proc.address).errors) == {}
    log = "".join(proc.output)
    assert "not written (OSError: [Errno 28] No space left on device" in log
    assert log.count("not written") == 1  # rate-limited
    l1d = tier(proc.address, "L1d")
    assert 0 < l1d.fills == len(_entries(tiny_disk)) < STUDIES
    assert not list(tiny_disk.rglob("*.tmp"))
