"""``dataengine verify`` on prepared views: a view made by ``prepare``
passes; a flipped shard byte, another prefix code version, an unfinished
run, a failed list that disagrees with the values, and values re-encoded
with other (valid, checksummed) arrays each fail with a line that names the
view, the shard or sample, and the reason."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dataengine.cli import main as cli_main
from dataengine.pipeline.spec import PipelineSpec
from dataengine.pipeline.stored import (
    StoredSampleError,
    compress_blob,
    decode_prefix,
    decompress_blob,
    encode_prefix,
)
from dataengine.prepared import PrepareConfig, PreparedManifest, prepare_dataset, view_dir
from dataengine.shards import (
    MANIFEST_NAME,
    Dataset,
    Manifest,
    ShardReader,
    ShardWriter,
    atomic_write_bytes,
)
from dataengine.synth import generate_corpus
from dataengine.v1 import record_pb2
from dataengine.verify import COUNT_KEYS, VerifyReport, verify_dataset

from ..conftest import write_dataset

SPEC = PipelineSpec(image_slices=4, image_resize=16, image_crop=16, wave_rate_hz=100.0)
STUDIES = 4


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, deid_key) -> Path:
    """A packed 4-study corpus (2 shards, mixed transfer syntaxes) with the
    view of ``SPEC`` prepared by ``prepare_dataset``."""
    from dataengine.pack import PackConfig, pack_dataset

    root = tmp_path_factory.mktemp("prepared")
    generate_corpus(
        root / "raw", STUDIES, seed=2, slices=4, rows=32, cols=32, ecg_seconds=2,
        transfer_syntaxes=("explicit", "rle", "jpeg2000"),
    )  # fmt: skip
    dataset = root / "dataset"
    pack_dataset(root / "raw", dataset, PackConfig(shard_samples=2, workers=1, key=deid_key))
    prepare_dataset(dataset, SPEC, PrepareConfig(workers=1), progress=False)
    return dataset


@pytest.fixture
def dataset(pristine: Path, tmp_path: Path) -> Path:
    """A copy of ``pristine``, free to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "dataset"))


def _view(dataset: Path) -> Path:
    return view_dir(dataset, SPEC.prefix_key())


def _prepared_problems(report: VerifyReport) -> list[str]:
    return [
        f"[{p.kind}] {p.location()}: {p.what}" for p in report.problems if p.kind.startswith("prep")
    ]


def _rewrite_view(
    dataset: Path, change: Callable[[int, dict[str, np.ndarray]], dict[str, np.ndarray]]
) -> None:
    """Re-encode every value of the view through ``change(sid, arrays)``
    (returning new arrays) into new, valid shards, with a manifest whose
    sizes and SHA-256s match: only a fresh decode can tell."""
    view = _view(dataset)
    manifest = PreparedManifest.load(view)
    shards = []
    for entry in manifest.shards:
        with ShardReader(view / entry.file) as reader:
            values = list(reader.items())
        (view / entry.file).unlink()
        with ShardWriter(view, entry.shard_id, entry.first_sample_id) as writer:
            for sid, value in values:
                arrays = {
                    k: np.array(v)
                    for k, v in decode_prefix(decompress_blob(value, sid), sid).items()
                }
                writer.add(sid, compress_blob(encode_prefix(sid, change(sid, arrays))))
            shards.append(writer.close())
    new = dataclasses.replace(manifest, shards=tuple(shards))
    atomic_write_bytes(view / MANIFEST_NAME, new.to_json().encode("utf-8"))


def test_a_prepared_view_passes(pristine: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = verify_dataset(pristine, prepared_sample=STUDIES)
    assert report.ok, report.format()
    c = report.counts
    assert set(c) == set(COUNT_KEYS)
    assert c["prepared_views"] == c["prepared_views_intact"] == 1
    assert c["prepared_values_read"] == c["prepared_values_checked"] == STUDIES
    assert c["prepared_compared"] == STUDIES
    assert c["prepared_compare_skipped"] == c["prepared_failed_recorded"] == 0
    assert report.notes == []
    assert "prepared views: 1 found, 1 intact" in report.format()
    # the sample is deterministic and may be turned off
    assert verify_dataset(pristine, prepared_sample=2).counts["prepared_compared"] == 2
    assert verify_dataset(pristine, prepared_sample=0).counts["prepared_compared"] == 0
    assert cli_main(["verify", str(pristine), "--prepared-sample", "1"]) == 0
    assert "1 equal to a fresh decode" in capsys.readouterr().out


def test_a_flipped_byte_in_a_prepared_shard_fails(
    dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shard = _view(dataset) / "shard-00001.lmdb"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    report = verify_dataset(dataset)
    assert not report.ok
    lines = _prepared_problems(report)
    where = f"prepared/{SPEC.prefix_key()}/shard-00001.lmdb"
    assert f"[prepared_checksum] {where}: SHA-256 is" in "\n".join(lines)
    assert all(where in line for line in lines), lines
    assert report.counts["prepared_views_intact"] == 0
    # the source dataset itself is intact
    assert [p for p in report.problems if not p.kind.startswith("prepared")] == []
    assert cli_main(["verify", str(dataset)]) == 1
    assert f"[prepared_checksum] {where}" in capsys.readouterr().out


def test_another_prefix_code_version_fails(dataset: Path) -> None:
    path = _view(dataset) / MANIFEST_NAME
    body = json.loads(path.read_text())
    body["prefix"]["prefix_code_version"] = 2
    path.write_text(json.dumps(body))
    report = verify_dataset(dataset)
    assert not report.ok
    (line,) = _prepared_problems(report)
    assert line.startswith(f"[prepared_stale] prepared/{SPEC.prefix_key()}: never served")
    assert "prefix code version 2" in line


def test_values_re_encoded_with_other_arrays_fail_the_fresh_decode(dataset: Path) -> None:
    def brighten(sid: int, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if sid == 1:  # one voxel of one study, one HU up
            arrays["hu"][0, 0, 0] += 1
        return arrays

    _rewrite_view(dataset, brighten)
    # every value is valid: checksums, shapes and dtypes pass; 3 of 4 compare equal
    report = verify_dataset(dataset, prepared_sample=STUDIES)
    assert not report.ok
    (line,) = _prepared_problems(report)
    assert line == (
        f"[prepared_mismatch] prepared/{SPEC.prefix_key()}/shard-00000.lmdb sample 1: "
        "fresh decode differs: hu: 1 of 1024 values differ (largest by 1)"
    )
    assert report.counts["prepared_values_checked"] == STUDIES
    assert report.counts["prepared_compared"] == STUDIES - 1


def test_wrong_shapes_and_dtypes_fail(dataset: Path) -> None:
    def squash(sid: int, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if sid == 2:
            arrays["hu"] = arrays["hu"][:2].astype(np.float32)
        return arrays

    _rewrite_view(dataset, squash)
    report = verify_dataset(dataset, prepared_sample=0)
    lines = _prepared_problems(report)
    where = f"prepared/{SPEC.prefix_key()}/shard-00001.lmdb sample 2"
    assert f"[prepared_shape] {where}: hu is float32, the view's prefix implies int16" in lines
    assert (
        f"[prepared_shape] {where}: hu has shape [2, 16, 16], the view's prefix implies [4x16x16]"
        in lines
    )


def test_an_unfinished_prepare_run_fails(dataset: Path) -> None:
    (_view(dataset) / MANIFEST_NAME).unlink()
    report = verify_dataset(dataset)
    (line,) = _prepared_problems(report)
    assert line.startswith(f"[prepared_manifest] prepared/{SPEC.prefix_key()}: no manifest.json")


def test_recorded_failures_must_match_the_manifest(tmp_path: Path, pristine: Path) -> None:
    """A study that does not decode is recorded in its value and in the
    manifest; a fresh decode fails the same way. A manifest that forgets it
    fails."""
    with Dataset(pristine) as ds:
        records = [ds.read(i) for i in range(2)]
    broken = record_pb2.StudyRecord()
    broken.CopyFrom(records[1])
    broken.images[0].data = b"not a DICOM file"
    root = tmp_path / "dataset"
    manifest = write_dataset(root, [[records[0], broken]], pack=Manifest.load(pristine).pack)
    (entry,) = manifest.shards
    prepare_dataset(root, SPEC, PrepareConfig(workers=1), progress=False)

    report = verify_dataset(root, prepared_sample=2)
    assert _prepared_problems(report) == []
    assert report.counts["prepared_failed_recorded"] == 1
    assert report.counts["prepared_compared"] == 2  # the failure fails afresh with its kind
    with ShardReader(_view(root) / entry.file) as reader, pytest.raises(StoredSampleError):
        decode_prefix(decompress_blob(reader.get(1), 1), 1)

    path = _view(root) / MANIFEST_NAME
    body = json.loads(path.read_text())
    assert [f["sample_id"] for f in body["failed"]] == [1]
    body["failed"] = []
    path.write_text(json.dumps(body, indent=2))
    (line,) = _prepared_problems(verify_dataset(root, prepared_sample=0))
    assert line.startswith(
        f"[prepared_failed] prepared/{SPEC.prefix_key()} sample 1: its value records a"
    )
    assert line.endswith("failure the manifest does not list")


def test_a_vocabulary_tokenizer_skips_the_fresh_decode_with_a_note(dataset: Path) -> None:
    path = _view(dataset) / MANIFEST_NAME
    manifest = PreparedManifest.load(_view(dataset))
    prefix = {**manifest.prefix, "tokenizer": "vocab:0123456789abcdef"}
    from dataengine.pipeline.spec import prefix_key_of

    key = prefix_key_of(prefix)
    moved = _view(dataset).rename(_view(dataset).with_name(key))
    other = dataclasses.replace(manifest, prefix=prefix, prefix_key=key)
    atomic_write_bytes(moved / MANIFEST_NAME, other.to_json().encode("utf-8"))
    assert not path.exists()
    report = verify_dataset(dataset, prepared_sample=3)
    assert report.ok, report.format()
    assert report.counts["prepared_compare_skipped"] == 3
    assert report.counts["prepared_compared"] == 0
    (note,) = report.notes
    assert note.startswith(f"prepared/{key}: fresh-decode comparison skipped: its tokenizer is")
    assert "note: prepared/" in report.format()
