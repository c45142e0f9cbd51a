"""A study whose prefix cannot be computed is recorded in the view with the
kind and message a fresh decode gives, listed in the manifest's ``failed``,
and the run goes on."""

from __future__ import annotations

import shutil
from pathlib import Path

import lmdb
import pytest

from dataengine.errors import DataEngineError
from dataengine.pipeline.prefix import run_prefix
from dataengine.pipeline.stored import StoredSampleError, decode_prefix, decompress_blob
from dataengine.prepared import PrepareConfig, check_view, prepare_dataset
from dataengine.shards import Dataset, Manifest, ShardReader, encode_record
from dataengine.shards._writer import sample_key

from .conftest import SPEC

BAD_DICOM, FLIPPED = 1, 4


def _rewrite(dataset: Path, sample_id: int, value: bytes) -> None:
    """Overwrite one stored value in place (a damaged source shard)."""
    shard = Dataset(dataset).shard_of(sample_id)
    env = lmdb.open(str(dataset / shard.file), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        txn.put(sample_key(sample_id), value)
    env.close()


@pytest.fixture
def damaged(small_dataset: Path, tmp_path: Path) -> Path:
    dataset = Path(shutil.copytree(small_dataset, tmp_path / "ds"))
    with Dataset(dataset) as ds:
        record = ds.read(BAD_DICOM)
        flipped = bytearray(ds.read_value(FLIPPED))
    assert record.images, "the synthetic study has DICOM slices"
    record.images[0].data = b"DICM but not really a DICOM file" * 4
    _rewrite(dataset, BAD_DICOM, encode_record(record))
    flipped[len(flipped) // 2] ^= 0x40
    _rewrite(dataset, FLIPPED, bytes(flipped))
    return dataset


def _fresh_failure(dataset: Path, sample_id: int) -> DataEngineError:
    with Dataset(dataset) as ds, pytest.raises(DataEngineError) as info:
        run_prefix(ds.read(sample_id), SPEC)
    return info.value


def test_failed_studies_are_recorded_with_the_fresh_decode_error(damaged: Path) -> None:
    summary = prepare_dataset(damaged, SPEC, PrepareConfig(workers=2), progress=False)
    view = check_view(Path(summary.view_dir), Manifest.load(damaged))
    assert summary.samples == view.num_samples == Manifest.load(damaged).num_samples
    failed = {f.sample_id: f for f in view.failed}
    assert sorted(failed) == [BAD_DICOM, FLIPPED]
    for sid in (BAD_DICOM, FLIPPED):
        fresh = _fresh_failure(damaged, sid)
        assert failed[sid].kind == fresh.kind
        assert str(fresh) in failed[sid].message and f"sample {sid}" in failed[sid].message
    assert failed[BAD_DICOM].kind == "decode" and failed[FLIPPED].kind == "data_loss"
    assert summary.failed == view.summary["failed"] == {"data_loss": 1, "decode": 1}
    assert "data_loss=1, decode=1" in summary.format()
    # The stored value of a failed study raises the original kind and message.
    values: dict[int, bytes] = {}
    for shard in view.shards:
        with ShardReader(Path(summary.view_dir) / shard.file) as reader:
            values.update(reader.items())
    for sid, value in values.items():
        blob = decompress_blob(value, sid)
        if sid in failed:
            with pytest.raises(StoredSampleError) as info:
                decode_prefix(blob, sid)
            assert (info.value.kind, str(info.value)) == (failed[sid].kind, failed[sid].message)
        else:
            assert set(decode_prefix(blob, sid)) == {"hu", "wave", "tokens", "present"}
