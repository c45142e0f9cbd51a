"""Shard writer/reader, record codec and manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataengine.errors import DataLossError, DecodeError, NotFoundError, PackError
from dataengine.shards import (
    Dataset,
    Manifest,
    ShardReader,
    ShardWriter,
    decode_record,
    encode_record,
    file_sha256,
)
from dataengine.v1 import record_pb2

from ..conftest import write_dataset


def _record(i: int) -> record_pb2.StudyRecord:
    return record_pb2.StudyRecord(
        sample_id=i,
        study_key=f"k{i}",
        report=f"report {i} " * 50,
        images=[record_pb2.EncodedFile(format="dicom", name="img_0000.dcm", data=bytes([i]) * 300)],
    )


def _dataset_of_sizes(root: Path, sizes: list[int]) -> Manifest:
    """Shards of ``sizes`` records each, sample ids 0, 1, ... in order."""
    ids = iter(range(sum(sizes)))
    return write_dataset(root, [[_record(next(ids)) for _ in range(n)] for n in sizes])


def test_write_then_read_every_record(tmp_path: Path) -> None:
    manifest = _dataset_of_sizes(tmp_path, [3, 3, 2])
    assert manifest.num_samples == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "manifest.json",
        "shard-00000.lmdb",
        "shard-00001.lmdb",
        "shard-00002.lmdb",
    ]
    for entry in manifest.shards:
        assert file_sha256(tmp_path / entry.file) == entry.sha256
        assert (tmp_path / entry.file).stat().st_size == entry.size_bytes
    with Dataset(tmp_path) as ds:
        assert len(ds) == 8
        for i in range(8):
            assert ds.read(i) == _record(i)
        assert ds.shard_of(5).shard_id == 1
        with pytest.raises(NotFoundError, match=r"samples 0\.\.7"):
            ds.read(8)


def test_reader_iterates_in_id_order(tmp_path: Path) -> None:
    manifest = _dataset_of_sizes(tmp_path, [4])
    with ShardReader(tmp_path / manifest.shards[0].file) as reader:
        assert [i for i, _ in reader.items()] == [0, 1, 2, 3]


def test_aborted_writer_leaves_no_shard(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), ShardWriter(tmp_path, 0, 0) as writer:
        writer.add(0, encode_record(_record(0)))
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_gaps_and_duplicates(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, 0, 10)
    writer.add(10, b"x")
    with pytest.raises(PackError, match="expected 11"):
        writer.add(12, b"y")
    writer.abort()


def test_flipped_bit_is_data_loss() -> None:
    value = bytearray(encode_record(_record(1)))
    value[len(value) // 2] ^= 0x10
    with pytest.raises(DataLossError):
        decode_record(bytes(value), sample_id=1)


def test_record_under_wrong_key_is_data_loss() -> None:
    with pytest.raises(DataLossError, match="holds sample_id 1"):
        decode_record(encode_record(_record(1)), sample_id=2)


def test_manifest_rejects_gaps_and_unknown_formats(tmp_path: Path) -> None:
    manifest = _dataset_of_sizes(tmp_path, [2, 2])
    body = json.loads(manifest.to_json())
    body["shards"][1]["first_sample_id"] = 3
    with pytest.raises(DecodeError, match="expected 2"):
        Manifest.from_json(json.dumps(body))
    body["format"] = "something-else"
    with pytest.raises(DecodeError, match="not a valid dataset manifest"):
        Manifest.from_json(json.dumps(body))
    with pytest.raises(NotFoundError, match=r"no manifest\.json"):
        Manifest.load(tmp_path / "missing")
