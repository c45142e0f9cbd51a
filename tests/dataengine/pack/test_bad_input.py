"""Bad input is quarantined, one ``quarantine.jsonl`` line per file, and never
costs the rest of its study: each study of a small synthetic corpus gets one
kind of damage, the corpus is packed once, and each test checks one entry
(path, kind, reason, exception type) and what of its study still packed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.encaps import encapsulate

from dataengine.deid import DeidKey
from dataengine.deid.keys import pseudonym
from dataengine.formats.edf import decode_edf
from dataengine.pack import QUARANTINE_NAME, PackConfig, PackSummary, pack_dataset
from dataengine.shards import Dataset
from dataengine.synth import generate_corpus
from dataengine.v1 import record_pb2

KEY = DeidKey(b"medstream-bad-input-test-key-012345")
SLICES = 3
MAX_FILE_BYTES = 60_000  # a synthetic EDF of 2 s is ~19 kB
GARBAGE = bytes(range(256)) * 4  # no magic, not UTF-8
KINDS = {"DecodeError": "decode", "DeidError": "deid"}

# study -> what is done to it (see _damage)
CASES = {
    "study_0000": "zero-byte DICOM slice",
    "study_0001": "DICOM slice truncated inside its pixel data",
    "study_0002": "DICOM slice truncated inside its header",
    "study_0003": "EDF truncated to half",
    "study_0004": "EDF bytes named .dcm",
    "study_0005": "DICOM named .txt",
    "study_0006": "garbage named .dcm, .edf and .txt",
    "study_0007": "unsupported transfer syntax (MPEG2)",
    "study_0008": "pixel data 100 bytes shorter than the header says",
    "study_0009": "a file over max_file_bytes",
    "study_0010": "nothing usable",
    "study_0011": "DICOM without pixel data, and a .jpg",
    "study_0012": "untouched",
}


def _rewrite_dicom(path: Path, edit: Any) -> None:
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path, enforce_file_format=True)


def _to_mpeg2(ds: pydicom.Dataset) -> None:
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 MP@ML
    ds.PixelData = encapsulate([ds.PixelData])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def _shorten_pixels(ds: pydicom.Dataset) -> None:
    ds.PixelData = ds.PixelData[:-100]


def _damage(raw: Path) -> None:
    s = {name: raw / name for name in CASES}
    (s["study_0000"] / "ct_0001.dcm").write_bytes(b"")
    ct = (s["study_0001"] / "ct_0001.dcm").read_bytes()
    (s["study_0001"] / "ct_0001.dcm").write_bytes(ct[: len(ct) - 500])
    (s["study_0002"] / "ct_0001.dcm").write_bytes(ct[:300])
    edf = (s["study_0003"] / "ecg.edf").read_bytes()
    (s["study_0003"] / "ecg.edf").write_bytes(edf[: len(edf) // 2])
    (s["study_0004"] / "ecg.edf").rename(s["study_0004"] / "ecg.dcm")
    (s["study_0005"] / "ct_0000.dcm").rename(s["study_0005"] / "ct_0000.txt")
    for suffix in (".dcm", ".edf", ".txt"):
        (s["study_0006"] / f"junk{suffix}").write_bytes(GARBAGE)
    _rewrite_dicom(s["study_0007"] / "ct_0001.dcm", _to_mpeg2)
    _rewrite_dicom(s["study_0008"] / "ct_0001.dcm", _shorten_pixels)
    big = (s["study_0009"] / "ct_0000.dcm").read_bytes() + b"\0" * MAX_FILE_BYTES
    (s["study_0009"] / "ct_big.dcm").write_bytes(big)
    for path in s["study_0010"].iterdir():
        path.write_bytes(GARBAGE)
    _rewrite_dicom(s["study_0011"] / "ct_0002.dcm", lambda ds: delattr(ds, "PixelData"))
    (s["study_0011"] / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 a jpeg")


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PackSummary]:
    raw = tmp_path_factory.mktemp("raw")
    generate_corpus(
        raw, studies=len(CASES), seed=21, slices=SLICES, rows=32, cols=32, ecg_seconds=2
    )
    _damage(raw)
    out = tmp_path_factory.mktemp("ds") / "bad-input"
    config = PackConfig(key=KEY, workers=1, shard_samples=4, max_file_bytes=MAX_FILE_BYTES)
    return out, pack_dataset(raw, out, config)


@pytest.fixture(scope="module")
def entries(packed: tuple[Path, PackSummary]) -> dict[str, dict[str, str]]:
    out, _ = packed
    lines = (out / QUARANTINE_NAME).read_text().splitlines()
    parsed = [json.loads(line) for line in lines]
    by_path = {e["path"]: e for e in parsed}
    assert len(by_path) == len(parsed), "one entry per path"
    return by_path


@pytest.fixture(scope="module")
def records(packed: tuple[Path, PackSummary]) -> dict[str, record_pb2.StudyRecord]:
    """Packed records by study folder name."""
    out, _ = packed
    by_key = {pseudonym(KEY, "study", name): name for name in CASES}
    with Dataset(out) as ds:
        return {by_key[r.study_key]: r for r in (ds.read(i) for i in range(len(ds)))}


def _shape(record: record_pb2.StudyRecord) -> tuple[int, int, bool]:
    """(images, waveforms, has a report) of a packed study."""
    return len(record.images), len(record.waveforms), bool(record.report)


def _decoder_entry(entry: dict[str, str], path: str) -> None:
    """A decoder or de-identification refusal: documented type, matching kind."""
    assert entry["path"] == path
    assert entry["exception"] in KINDS, entry
    assert entry["kind"] == KINDS[entry["exception"]], entry


def test_every_quarantined_path_is_accounted_for(
    packed: tuple[Path, PackSummary], entries: dict[str, dict[str, str]]
) -> None:
    _, summary = packed
    assert set(entries) == {
        "study_0000/ct_0001.dcm",
        "study_0001/ct_0001.dcm",
        "study_0002/ct_0001.dcm",
        "study_0003/ecg.edf",
        "study_0006/junk.dcm",
        "study_0006/junk.edf",
        "study_0006/junk.txt",
        "study_0007/ct_0001.dcm",
        "study_0008/ct_0001.dcm",
        "study_0009/ct_big.dcm",
        "study_0010/ct_0000.dcm",
        "study_0010/ct_0001.dcm",
        "study_0010/ct_0002.dcm",
        "study_0010/ecg.edf",
        "study_0010/report.txt",
        "study_0010",
        "study_0011/ct_0002.dcm",
        "study_0011/photo.jpg",
    }
    for entry in entries.values():
        assert set(entry) == {"path", "kind", "reason", "exception"} and entry["reason"]
    assert summary.studies_seen == len(CASES) and summary.studies_packed == len(CASES) - 1
    assert sum(summary.quarantined.values()) == len(entries)


def test_zero_byte_file(entries: dict[str, dict[str, str]], records: dict) -> None:
    assert entries["study_0000/ct_0001.dcm"] == {
        "path": "study_0000/ct_0001.dcm",
        "kind": "empty_file",
        "reason": "file is empty (0 bytes)",
        "exception": "ValueError",
    }
    assert _shape(records["study_0000"]) == (SLICES - 1, 1, True)


def test_truncated_dicom(entries: dict[str, dict[str, str]], records: dict) -> None:
    in_pixels = entries["study_0001/ct_0001.dcm"]
    _decoder_entry(in_pixels, "study_0001/ct_0001.dcm")
    assert in_pixels["exception"] == "DecodeError"
    assert re.search(r"pixel data|truncat|length", in_pixels["reason"], re.IGNORECASE)
    in_header = entries["study_0002/ct_0001.dcm"]
    _decoder_entry(in_header, "study_0002/ct_0001.dcm")
    assert in_header["exception"] == "DecodeError"
    for study in ("study_0001", "study_0002"):  # the other slices still make a volume
        assert _shape(records[study]) == (SLICES - 1, 1, True)
        assert records[study].meta["image_slices"] == str(SLICES - 1)


def test_truncated_edf(entries: dict[str, dict[str, str]], records: dict) -> None:
    entry = entries["study_0003/ecg.edf"]
    _decoder_entry(entry, "study_0003/ecg.edf")
    assert "truncated" in entry["reason"].lower()
    assert _shape(records["study_0003"]) == (SLICES, 0, True)


def test_files_are_classified_by_content_before_suffix(
    entries: dict[str, dict[str, str]], records: dict
) -> None:
    """EDF bytes named .dcm pack as a waveform, a DICOM named .txt as an image."""
    assert not any(p.startswith(("study_0004/", "study_0005/")) for p in entries)
    edf_as_dcm = records["study_0004"]
    assert _shape(edf_as_dcm) == (SLICES, 1, True)
    assert edf_as_dcm.waveforms[0].format == "edf"
    assert decode_edf(edf_as_dcm.waveforms[0].data).signals.shape == (12, 500)
    assert _shape(records["study_0005"]) == (SLICES, 1, True)
    assert records["study_0005"].meta["image_slices"] == str(SLICES)


def test_garbage_with_each_suffix(entries: dict[str, dict[str, str]], records: dict) -> None:
    dcm, edf, txt = (entries[f"study_0006/junk{s}"] for s in (".dcm", ".edf", ".txt"))
    _decoder_entry(dcm, "study_0006/junk.dcm")
    assert dcm["exception"] == "DecodeError" and "not DICOM" in dcm["reason"]
    _decoder_entry(edf, "study_0006/junk.edf")
    assert "EDF" in edf["reason"]
    _decoder_entry(txt, "study_0006/junk.txt")
    assert txt["exception"] == "DecodeError" and "UTF-8" in txt["reason"]
    assert re.search(r"byte|offset", txt["reason"])
    assert _shape(records["study_0006"]) == (SLICES, 1, True)  # the good files are all there


def test_unsupported_transfer_syntax(entries: dict[str, dict[str, str]], records: dict) -> None:
    entry = entries["study_0007/ct_0001.dcm"]
    _decoder_entry(entry, "study_0007/ct_0001.dcm")
    assert entry["exception"] == "DecodeError" and "MPEG2" in entry["reason"]
    assert _shape(records["study_0007"]) == (SLICES - 1, 1, True)


def test_pixel_data_length_does_not_match_the_header(
    entries: dict[str, dict[str, str]], records: dict
) -> None:
    entry = entries["study_0008/ct_0001.dcm"]
    _decoder_entry(entry, "study_0008/ct_0001.dcm")
    assert entry["exception"] == "DecodeError"
    assert "1948" in entry["reason"] and "2048" in entry["reason"]  # bytes found, expected
    assert _shape(records["study_0008"]) == (SLICES - 1, 1, True)


def test_file_over_the_size_limit(entries: dict[str, dict[str, str]], records: dict) -> None:
    entry = entries["study_0009/ct_big.dcm"]
    assert entry["kind"] == "too_large" and entry["exception"] == "ValueError"
    m = re.fullmatch(r"file of (\d+) bytes exceeds max_file_bytes (\d+)", entry["reason"])
    assert m and int(m[1]) > MAX_FILE_BYTES and int(m[2]) == MAX_FILE_BYTES
    assert _shape(records["study_0009"]) == (SLICES, 1, True)


def test_study_with_nothing_usable_keeps_ids_contiguous(
    packed: tuple[Path, PackSummary], entries: dict[str, dict[str, str]], records: dict
) -> None:
    assert entries["study_0010"] == {
        "path": "study_0010",
        "kind": "no_usable_files",
        "reason": "study has no usable DICOM, EDF or report file",
        "exception": "",
    }
    assert "study_0010" not in records
    assert [r.sample_id for r in records.values()] == list(range(len(CASES) - 1))
    assert records["study_0011"].sample_id == 10  # right after study_0009


def test_dicom_without_pixel_data_and_unknown_type(
    entries: dict[str, dict[str, str]], records: dict
) -> None:
    no_pixels = entries["study_0011/ct_0002.dcm"]
    assert no_pixels["kind"] == "decode"
    assert re.search(r"no pixel ?data|without pixel ?data", no_pixels["reason"], re.IGNORECASE)
    assert entries["study_0011/photo.jpg"] == {
        "path": "study_0011/photo.jpg",
        "kind": "unsupported_type",
        "reason": "unsupported file type '.jpg'",
        "exception": "ValueError",
    }
    assert _shape(records["study_0011"]) == (SLICES - 1, 1, True)
    assert _shape(records["study_0012"]) == (SLICES, 1, True)
