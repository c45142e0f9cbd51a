"""Prepared views served by real engines over real files: a cold epoch comes
wholly from the view (through L1 or straight from L2) with the bytes of a
fresh decode; a stale view, a view shard that fails its SHA-256 or a value
that fails its checksum is never served and its samples are decoded instead;
a study the view records as failed gives the fresh decode's error; a fleet
mixing an engine with the view and one without gives the same batches."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dataengine.prepared import PrepareConfig, PreparedManifest, prepare_dataset
from dataengine.shards import MANIFEST_NAME, ShardReader, file_sha256

from .conftest import (
    BAD_STUDY,
    COLD_SPEC,
    STUDIES,
    copy_dataset,
    engine_stats,
    fetch_epoch,
    rewrite_value,
    sources,
    tier,
)

pytestmark = pytest.mark.slow

NAMES = ("prepared", "decode_cache", "decoded", "ram")


def _counts(**given: int) -> dict[str, int]:
    return {name: given.get(name, 0) for name in NAMES}


def _prepare(dataset: Path) -> Path:
    """Prepare ``dataset`` for ``COLD_SPEC``; the view's directory."""
    summary = prepare_dataset(dataset, COLD_SPEC, PrepareConfig(workers=1), progress=False)
    return Path(summary.view_dir)


def _decodes(address: str) -> int:
    return {s.stage: s.count for s in engine_stats(address).stages}["decode"]


@pytest.fixture(scope="module")
def prepared(cold_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of ``cold_dataset`` with its ``COLD_SPEC`` view (not modified)."""
    dataset = copy_dataset(cold_dataset, tmp_path_factory.mktemp("prepared") / "cold")
    _prepare(dataset)
    return dataset


@pytest.fixture
def private_view(cold_dataset: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private prepared copy to damage: (dataset, view directory)."""
    dataset = copy_dataset(cold_dataset, tmp_path / "cold")
    return dataset, _prepare(dataset)


@pytest.mark.parametrize("through", ["L1", "L2"])
def test_a_cold_epoch_is_served_wholly_from_the_view(
    prepared: Path, start_engine: Callable, tmp_path: Path, cold_reference: dict, through: str
) -> None:
    view = PreparedManifest.load(prepared / "prepared" / COLD_SPEC.prefix_key())
    flags = ["--workers", "1"]
    if through == "L1":
        flags += ["--cache-dir", str(tmp_path / "nvme")]
    proc = start_engine([prepared], *flags)
    assert fetch_epoch(proc.address) == cold_reference[0]
    assert sources(proc.address) == _counts(prepared=STUDIES)
    assert _decodes(proc.address) == 0
    l2 = tier(proc.address, "L2")
    if through == "L1":  # each view shard copied (and so verified) once
        l1 = tier(proc.address, "L1")
        assert (l1.fills, l1.entries) == (len(view.shards), len(view.shards))
        assert (l2.hits, l2.bytes_read) == (len(view.shards), view.size_bytes)
        assert tier(proc.address, "L1d").fills == 0
    else:  # each view shard hashed once, then its values read
        assert l2.hits == len(view.shards) + STUDIES and l2.bytes_read > view.size_bytes
    # Epoch 1 re-augments the prefixes the view put in L0.
    assert fetch_epoch(proc.address, 1) == cold_reference[1]
    assert sources(proc.address) == _counts(prepared=STUDIES, ram=STUDIES)
    assert "prepared view " + view.prefix_key in "".join(proc.output)


def test_a_view_of_other_prefix_code_is_not_served(
    private_view: tuple[Path, Path], start_engine: Callable, cold_reference: dict
) -> None:
    dataset, view = private_view
    body = json.loads((view / MANIFEST_NAME).read_text())
    body["prefix"]["prefix_code_version"] -= 1
    (view / MANIFEST_NAME).write_text(json.dumps(body))
    proc = start_engine([dataset], "--workers", "1")
    assert fetch_epoch(proc.address) == cold_reference[0]
    assert sources(proc.address) == _counts(decoded=STUDIES)
    log = "".join(proc.output)
    assert f"not serving {view}" in log and "prefix code version" in log


@pytest.mark.parametrize("through", ["L1", "L2"])
def test_a_view_shard_that_fails_its_sha256_is_decoded_instead(
    private_view: tuple[Path, Path],
    start_engine: Callable,
    tmp_path: Path,
    cold_reference: dict,
    through: str,
) -> None:
    dataset, view = private_view
    shard = PreparedManifest.load(view).shards[1]
    damaged = bytearray((view / shard.file).read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # same size: only the checksum tells
    (view / shard.file).write_bytes(bytes(damaged))
    flags = ["--workers", "1"]
    if through == "L1":
        flags += ["--cache-dir", str(tmp_path / "nvme"), "--decode-cache", "0"]
    proc = start_engine([dataset], *flags)
    for epoch in (0, 1):
        assert fetch_epoch(proc.address, epoch) == cold_reference[epoch]
    bad = shard.num_samples
    assert sources(proc.address) == _counts(prepared=STUDIES - bad, decoded=bad, ram=STUDIES)
    log = "".join(proc.output)
    assert log.count(f"not serving prepared shard {view / shard.file}") == 1


def test_a_value_that_fails_its_checksum_is_decoded_instead(
    private_view: tuple[Path, Path], start_engine: Callable, cold_reference: dict
) -> None:
    """A view whose manifest vouches for a shard holding a damaged value
    (as if prepare had a bug): the shard passes, the value does not."""
    dataset, view = private_view
    manifest = PreparedManifest.load(view)
    shard = manifest.shards[2]
    path = view / shard.file
    with ShardReader(path) as reader:
        value = bytearray(reader.get(4))
    value[len(value) // 2] ^= 0x20
    rewrite_value(path, 4, bytes(value))
    vouched = dataclasses.replace(shard, size_bytes=path.stat().st_size, sha256=file_sha256(path))
    shards = tuple(vouched if s is shard else s for s in manifest.shards)
    text = dataclasses.replace(manifest, shards=shards).to_json()
    (view / MANIFEST_NAME).write_text(text)
    proc = start_engine([dataset], "--workers", "1")
    assert fetch_epoch(proc.address) == cold_reference[0]
    assert sources(proc.address) == _counts(prepared=STUDIES - 1, decoded=1)
    log = "".join(proc.output)
    assert f"sample 4 of cold: prepared value in {path}" in log
    assert "decoded from the source instead" in log


def test_a_failed_study_in_the_view_gives_the_fresh_decode_error(
    cold_damaged: Path, start_engine: Callable, tmp_path: Path
) -> None:
    fresh = start_engine([cold_damaged], "--workers", "1", "--ram-cache", "0")
    expected = fetch_epoch(fresh.address)
    assert [(sid, kind) for sid, kind, _ in expected.lost] == [(BAD_STUDY, "decode")]
    dataset = copy_dataset(cold_damaged, tmp_path / "cold")
    view = PreparedManifest.load(_prepare(dataset))
    assert [(f.sample_id, f.kind) for f in view.failed] == [(BAD_STUDY, "decode")]
    proc = start_engine([dataset], "--workers", "1")
    assert fetch_epoch(proc.address) == expected  # same batches, same error and message
    assert dict(engine_stats(proc.address).errors) == {"decode": 1}
    assert sources(proc.address) == _counts(prepared=STUDIES - 1)
    assert _decodes(proc.address) == 0


def test_a_fleet_mixing_a_prepared_and_an_unprepared_engine_gives_the_same_batches(
    prepared: Path, cold_dataset: Path, start_engine: Callable, cold_reference: dict
) -> None:
    with_view = start_engine([prepared], "--workers", "1", "--ram-cache", "0")
    without = start_engine([cold_dataset], "--workers", "1", "--ram-cache", "0")
    fleet = [with_view.address, without.address]
    # With shard ownership (the fleet's way), and with micro-batches going
    # whole to the engines in turn, so that both surely serve some.
    assert fetch_epoch(fleet, 0) == cold_reference[0]
    assert fetch_epoch(fleet, 1, ownership=False) == cold_reference[1]
    a, b = sources(with_view.address), sources(without.address)
    assert a["prepared"] > 0 and a["decoded"] == 0
    assert b["decoded"] > 0 and b["prepared"] == 0
    assert sum(a.values()) + sum(b.values()) >= 2 * STUDIES  # hedged requests count twice
