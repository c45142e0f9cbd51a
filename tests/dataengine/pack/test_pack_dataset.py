"""dataengine.pack: join, de-identify, quarantine, shard, manifest."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from dataengine.audit import DATASET_AUDIT_NAME
from dataengine.deid import DeidKey
from dataengine.deid.dicom import PROFILE
from dataengine.errors import ConfigError, PackError
from dataengine.formats.dicom import decode_series
from dataengine.formats.edf import decode_edf
from dataengine.pack import QUARANTINE_NAME, PackConfig, PackSummary, pack_dataset
from dataengine.shards import Dataset, Manifest, ShardReader, decompress_value, file_sha256
from dataengine.synth import PHI_PLANTED_NAME

KEY = DeidKey(b"medstream-test-pack-key-0123456789")
STUDIES = 8


pytestmark = pytest.mark.corpus(studies=STUDIES, seed=11, slices=4, rows=32, cols=32, ecg_seconds=4)


@pytest.fixture(scope="module")
def packed(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PackSummary]:
    out = tmp_path_factory.mktemp("datasets") / "synthetic"
    summary = pack_dataset(raw, out, PackConfig(key=KEY, workers=2, shard_samples=3))
    return out, summary


@pytest.mark.slow
def test_manifest_counts_and_shards(packed: tuple[Path, PackSummary]) -> None:
    out, summary = packed
    manifest = Manifest.load(out)
    assert manifest.name == "synthetic"
    assert [s.num_samples for s in manifest.shards] == [3, 3, 2]
    assert [s.first_sample_id for s in manifest.shards] == [0, 3, 6]
    for shard in manifest.shards:
        assert file_sha256(out / shard.file) == shard.sha256
        assert (out / shard.file).stat().st_size == shard.size_bytes
    pack = manifest.pack
    assert pack["studies_seen"] == pack["studies_packed"] == STUDIES
    assert pack["files_decoded"] == {"dicom": 4 * STUDIES, "edf": STUDIES, "report": STUDIES}
    assert pack["quarantined"] == {}
    assert pack["quarantine_file"] == QUARANTINE_NAME
    assert (out / QUARANTINE_NAME).read_bytes() == b""
    assert pack["redactions"]["NAME"] >= 3 * STUDIES
    assert pack["redactions"]["MRN"] == pack["redactions"]["PHONE"] == STUDIES
    deid = pack["deid"]
    assert deid["profile"] == PROFILE and deid["key_id"] == KEY.key_id
    assert deid["private_tags_removed"] == 5 * 4 * STUDIES
    assert deid["uids_remapped"] == 6 * 4 * STUDIES
    assert sorted(p.name for p in out.iterdir()) == [
        DATASET_AUDIT_NAME,
        "manifest.json",
        QUARANTINE_NAME,
        "shard-00000.lmdb",
        "shard-00001.lmdb",
        "shard-00002.lmdb",
    ]  # no *.tmp left
    assert (summary.studies_packed, summary.shards, summary.bytes) == (
        STUDIES,
        3,
        manifest.size_bytes,
    )
    text = summary.format()
    assert f"{STUDIES} seen, {STUDIES} packed" in text and "studies/s" in text


@pytest.mark.slow
def test_every_sample_decodes(packed: tuple[Path, PackSummary]) -> None:
    out, _ = packed
    keys = set()
    with Dataset(out) as ds:
        assert len(ds) == STUDIES
        for i in range(len(ds)):
            record = ds.read(i)
            assert record.sample_id == i
            keys.add(record.study_key)
            assert [f.name for f in record.images] == [f"img_{k:04d}.dcm" for k in range(4)]
            assert all(f.format == "dicom" for f in record.images)
            volume = decode_series([f.data for f in record.images])
            assert volume.hu.shape == (4, 32, 32)
            assert float(volume.hu.min()) > -1100 and float(volume.hu.max()) < 500
            assert [f.format for f in record.waveforms] == ["edf"]
            wave = decode_edf(record.waveforms[0].data)
            assert wave.signals.shape == (12, 4 * 250) and wave.rate_hz == 250
            assert "FINDINGS:" in record.report and "[NAME]" in record.report
            assert record.meta["modality"] == "CT" and record.meta["images"] == "4"
            assert record.meta["series_uid"].startswith("2.25.")
    assert len(keys) == STUDIES


@pytest.mark.slow
def test_no_planted_phi_anywhere_in_the_dataset(
    raw: Path, packed: tuple[Path, PackSummary]
) -> None:
    out, _ = packed
    planted = json.loads((raw / PHI_PLANTED_NAME).read_text())
    needles = sorted({p.lower().encode() for p in planted})
    assert len(needles) > 20 * STUDIES
    blobs: dict[str, bytes] = {}
    for path in out.iterdir():  # raw shard, manifest and quarantine files
        blobs[path.name] = path.read_bytes()
    for shard in Manifest.load(out).shards:  # every decompressed payload byte
        with ShardReader(out / shard.file) as reader:
            for sample_id, value in reader.items():
                blobs[f"sample {sample_id}"] = decompress_value(value)
    with Dataset(out) as ds:
        for i in range(len(ds)):
            record = ds.read(i)
            for f in [*record.images, *record.waveforms]:
                blobs[f"sample {i} {f.name}"] = f.data
            blobs[f"sample {i} report"] = record.report.encode()
            blobs[f"sample {i} meta"] = json.dumps(dict(record.meta)).encode()
    leaks = [(name, n) for name, blob in blobs.items() for n in needles if n in blob.lower()]
    assert leaks == []


def _write_bad_inputs(raw: Path) -> None:
    """Study 1: a corrupt DICOM, a truncated EDF and a non-UTF-8 report among good
    files; study 2: nothing usable; study 3: a zero-byte file and an unknown type."""
    s1, s2, s3 = raw / "study_0001", raw / "study_0002", raw / "study_0003"
    (s1 / "ct_9999.dcm").write_bytes(b"\x00" * 200 + b"definitely not DICOM")
    edf = (s1 / "ecg.edf").read_bytes()
    (s1 / "ecg.edf").write_bytes(edf[: len(edf) // 2])
    (s1 / "report.txt").write_bytes(b"Patient caf\xe9 \xff\x80 report")
    for path in s2.iterdir():
        path.unlink()
    (s2 / "scan.dcm").write_bytes(b"garbage" * 100)
    (s2 / "notes.txt").write_bytes(b"Notes caf\xe9 \xff\x80")
    (s3 / "empty.dcm").write_bytes(b"")
    (s3 / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 jpeg")


@pytest.mark.slow
def test_bad_inputs_are_quarantined_and_good_studies_packed(raw: Path, tmp_path: Path) -> None:
    bad = tmp_path / "raw"
    shutil.copytree(raw, bad)
    _write_bad_inputs(bad)
    out = tmp_path / "ds"
    summary = pack_dataset(bad, out, PackConfig(key=KEY, workers=2, shard_samples=3))
    entries = [json.loads(line) for line in (out / QUARANTINE_NAME).read_text().splitlines()]
    by_path = {e["path"]: e for e in entries}
    assert set(by_path) == {
        "study_0001/ct_9999.dcm",
        "study_0001/ecg.edf",
        "study_0001/report.txt",
        "study_0002/scan.dcm",
        "study_0002/notes.txt",
        "study_0002",
        "study_0003/empty.dcm",
        "study_0003/photo.jpg",
    }
    for entry in entries:
        assert entry["reason"] and set(entry) == {"path", "kind", "reason", "exception"}
    assert by_path["study_0001/ct_9999.dcm"] | {"reason": ""} == {
        "path": "study_0001/ct_9999.dcm", "kind": "decode", "reason": "",
        "exception": "DecodeError"}  # fmt: skip
    assert by_path["study_0001/ecg.edf"]["kind"] == "decode"
    assert by_path["study_0001/ecg.edf"]["exception"] == "DecodeError"
    assert by_path["study_0001/report.txt"]["exception"] == "DecodeError"
    assert re.search(r"(byte|offset) 11\b", by_path["study_0001/report.txt"]["reason"])
    assert by_path["study_0002"]["kind"] == "no_usable_files"
    assert by_path["study_0003/empty.dcm"]["kind"] == "empty_file"
    assert by_path["study_0003/photo.jpg"]["kind"] == "unsupported_type"
    assert summary.studies_seen == STUDIES and summary.studies_packed == STUDIES - 1
    assert summary.quarantined == {
        "decode": 5, "empty_file": 1, "no_usable_files": 1, "unsupported_type": 1}  # fmt: skip
    with Dataset(out) as ds:
        assert len(ds) == STUDIES - 1
        records = [ds.read(i) for i in range(len(ds))]  # contiguous ids despite the gap
    assert [r.sample_id for r in records] == list(range(STUDIES - 1))
    study1 = records[1]  # packed with what was usable: the CT series only
    assert len(study1.images) == 4 and len(study1.waveforms) == 0 and study1.report == ""
    assert len(records[2].images) == 4  # study_0003: its good files still packed
    assert all(len(r.images) == 4 and len(r.waveforms) == 1 for r in records[2:])
    # the same studies pack to the same bytes whatever their sample ids
    good = tmp_path / "good"
    pack_dataset(raw, good, PackConfig(key=KEY, workers=1, shard_samples=100))
    with Dataset(good) as ds:
        assert ds.read(4).study_key == records[3].study_key
        assert ds.read(4).images[0].data == records[3].images[0].data


def test_existing_dataset_and_bad_destinations_are_refused(raw: Path, tmp_path: Path) -> None:
    small = tmp_path / "raw"
    small.mkdir()
    shutil.copytree(raw / "study_0000", small / "study_0000")
    out = tmp_path / "ds"
    out.mkdir()
    (out / "shard-00000.lmdb.tmp").write_bytes(b"left over by a crash")
    summary = pack_dataset(small, out, PackConfig(key=KEY, workers=1))
    assert summary.studies_packed == 1 and summary.shards == 1
    assert not list(out.glob("*.tmp"))
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(PackError, match="already holds a packed dataset"):
        pack_dataset(small, out, PackConfig(key=KEY, workers=1))
    assert (out / "manifest.json").read_bytes() == before
    with pytest.raises(PackError, match="inside the raw folder"):
        pack_dataset(small, small / "dataset", PackConfig(key=KEY, workers=1))
    with pytest.raises(PackError, match="does not exist"):
        pack_dataset(tmp_path / "nope", tmp_path / "ds2", PackConfig(key=KEY, workers=1))


def test_config_is_validated() -> None:
    assert PackConfig(key=KEY).workers >= 1
    assert PackConfig(key=b"x" * 16).key == DeidKey(b"x" * 16)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"pack\.shard_samples"):
        PackConfig(key=KEY, shard_samples=0)
    with pytest.raises(ConfigError, match=r"pack\.workers"):
        PackConfig(key=KEY, workers=0)
    with pytest.raises(ConfigError, match=r"pack\.max_file_bytes"):
        PackConfig(key=KEY, max_file_bytes=-1)
    with pytest.raises(ConfigError, match=r"deid\.key"):
        PackConfig(key=b"short")  # type: ignore[arg-type]
