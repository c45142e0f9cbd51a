"""``dataengine verify``: a clean packed dataset passes; a flipped shard
byte, a wrong manifest checksum, a planted name in a report, a DICOM person
name that is not the pseudonym, PHI in EDF headers and annotations and in
WFDB comments each fail with a message that says where, and never the PHI
value itself."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pyedflib
import pytest

from dataengine.errors import ConfigError
from dataengine.shards import (
    MANIFEST_NAME,
    Dataset,
    Manifest,
    ShardReader,
)
from dataengine.synth import PHI_PLANTED_NAME
from dataengine.v1 import record_pb2
from dataengine.verify import COUNT_KEYS, VerifyReport, load_known_phi, mask, verify_dataset

from ..conftest import write_dataset


@pytest.fixture(scope="module")
def planted(raw_corpus: Path) -> list[str]:
    return load_known_phi(raw_corpus / PHI_PLANTED_NAME)


@pytest.fixture(scope="module")
def clean_records(packed_dataset: Path) -> list[record_pb2.StudyRecord]:
    """The first two packed records (copies, free to modify per test)."""
    with Dataset(packed_dataset) as ds:
        return [ds.read(i) for i in range(2)]


def _copy(records: list[record_pb2.StudyRecord]) -> list[record_pb2.StudyRecord]:
    out = []
    for r in records:
        c = record_pb2.StudyRecord()
        c.CopyFrom(r)
        out.append(c)
    return out


def _one_shard_dataset(
    root: Path, records: list[record_pb2.StudyRecord], packed_dataset: Path
) -> Path:
    """A one-shard dataset of ``records`` with the packed dataset's pack
    section (so the same de-identification policy applies)."""
    write_dataset(root, [records], pack=Manifest.load(packed_dataset).pack)
    return root


def _kinds(report: VerifyReport) -> set[str]:
    return {p.kind for p in report.problems}


def _assert_never_printed(report: VerifyReport, values: list[str]) -> None:
    text = report.format() + json.dumps(report.to_json_dict(), ensure_ascii=False)
    for v in values:
        assert v not in text, f"report prints the PHI value {v[:1]}..."


def _a_family_name(planted: list[str], record: record_pb2.StudyRecord) -> str:
    """A planted family name (``SURNAME^GIVEN`` in the list) of some study."""
    names = sorted(v.split("^")[0].title() for v in planted if "^" in v)
    return names[0]


# -- clean ------------------------------------------------------------------


def test_clean_packed_dataset_passes(packed_dataset: Path, planted: list[str]) -> None:
    report = verify_dataset(packed_dataset, planted)
    assert report.ok, report.format()
    manifest = Manifest.load(packed_dataset)
    c = report.counts
    assert set(c) == set(COUNT_KEYS)
    assert c["shards"] == c["shards_intact"] == len(manifest.shards) > 1
    assert c["samples_listed"] == c["records_read"] == c["records_decoded"] == manifest.num_samples
    assert c["dicom_files"] == 6 * manifest.num_samples  # synth writes 6 slices per study
    assert c["waveforms"] == c["reports"] == manifest.num_samples
    assert c["known_phi_values"] > 20 * manifest.num_samples
    assert c["values_scanned"] > 50 * manifest.num_samples
    text = report.format()
    assert text.splitlines()[0] == f"verify {packed_dataset}: OK"
    assert report.to_json_dict()["problems"] == []


# -- integrity ----------------------------------------------------------------


def test_flipped_shard_byte_fails_shard_and_record_checksums(
    packed_dataset: Path, tmp_path: Path
) -> None:
    ds = tmp_path / "ds"
    shutil.copytree(packed_dataset, ds)
    shard = Manifest.load(ds).shards[0]
    sample_id = shard.first_sample_id + 1
    with ShardReader(ds / shard.file) as reader:
        value = reader.get(sample_id)
    data = bytearray((ds / shard.file).read_bytes())
    offset = bytes(data).find(value)
    assert offset > 0  # the compressed record is stored contiguously
    data[offset + len(value) // 2] ^= 0x40
    (ds / shard.file).write_bytes(bytes(data))

    report = verify_dataset(ds)
    assert not report.ok
    by_kind = {p.kind: p for p in report.problems}
    assert set(by_kind) == {"shard_checksum", "record_checksum"}
    assert by_kind["shard_checksum"].shard == shard.file
    assert by_kind["record_checksum"].sample_id == sample_id
    assert "checksum" in by_kind["record_checksum"].what
    assert report.counts["shards_intact"] == report.counts["shards"] - 1
    assert report.counts["records_read"] == report.counts["samples_listed"] - 1


def test_manifest_checksum_and_totals_mismatch(packed_dataset: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    shutil.copytree(packed_dataset, ds)
    body = json.loads((ds / MANIFEST_NAME).read_text())
    body["shards"][1]["sha256"] = "0" * 64
    body["num_samples"] += 1
    (ds / MANIFEST_NAME).write_text(json.dumps(body))

    report = verify_dataset(ds)
    assert [(p.kind, p.shard) for p in report.problems] == [
        ("manifest", None),
        ("shard_checksum", body["shards"][1]["file"]),
    ]
    assert "manifest says 0000000000000000" in report.problems[1].what
    assert "num_samples says" in report.problems[0].what


def test_missing_manifest_shard_and_records(packed_dataset: Path, tmp_path: Path) -> None:
    assert [p.kind for p in verify_dataset(tmp_path).problems] == ["manifest"]
    ds = tmp_path / "ds"
    shutil.copytree(packed_dataset, ds)
    shards = Manifest.load(ds).shards
    (ds / shards[-1].file).unlink()
    body = json.loads((ds / MANIFEST_NAME).read_text())
    body["shards"][0]["num_samples"] += 1  # claims one sample more than stored...
    body["shards"][0]["size_bytes"] += 1
    for s in body["shards"][1:]:
        s["first_sample_id"] += 1  # ...and keeps the ids contiguous
    del body["num_samples"], body["size_bytes"]
    (ds / MANIFEST_NAME).write_text(json.dumps(body))

    report = verify_dataset(ds)
    got = [(p.kind, p.shard, p.sample_id) for p in report.problems]
    first = shards[0]
    assert ("shard_missing", shards[-1].file, None) in got
    assert ("shard_size", first.file, None) in got
    assert ("record_missing", first.file, first.num_samples) in got
    assert (
        "record_extra",
        shards[1].file,
        shards[1].first_sample_id,
    ) in got  # shard 1 now starts one id later


# -- decoding ------------------------------------------------------------------


def test_undecodable_payloads_are_reported_per_sample(
    clean_records: list[record_pb2.StudyRecord], packed_dataset: Path, tmp_path: Path
) -> None:
    records = _copy(clean_records)
    records[1].images[2].data = records[1].images[2].data[:-1000]  # truncated pixel data
    records[1].waveforms[0].data = records[1].waveforms[0].data[:300]  # truncated EDF
    report = verify_dataset(_one_shard_dataset(tmp_path / "ds", records, packed_dataset))
    decode = [p for p in report.problems if p.kind == "decode"]
    assert {p.sample_id for p in decode} == {1}
    wheres = " / ".join(p.where for p in decode)
    assert "images series 2.25." in wheres
    assert "waveforms[0] wave_0000.edf" in wheres
    assert all(p.what.startswith("decode: ") for p in decode), [p.what for p in decode]
    assert report.counts["records_decoded"] == 1
    assert _kinds(report) <= {"decode", "edf_deid"}


# -- PHI ---------------------------------------------------------------------


def test_planted_name_in_report_fails(
    clean_records: list[record_pb2.StudyRecord],
    packed_dataset: Path,
    planted: list[str],
    tmp_path: Path,
) -> None:
    records = _copy(clean_records)
    family = _a_family_name(planted, records[0])
    records[0].report += f"\nFollow-up arranged; {family} agreed. Call 617-555-0199 or 13812345678."
    records[1].meta["note"] = "seen by Dr. Jane Smith"
    report = verify_dataset(_one_shard_dataset(tmp_path / "ds", records, packed_dataset), planted)
    assert not report.ok
    got = {(p.kind, p.sample_id, p.where) for p in report.problems}
    assert got == {
        ("phi_known", 0, "report"),
        ("phi_pattern", 0, "report"),
        ("phi_pattern", 1, "meta[note]"),
    }
    known = next(p for p in report.problems if p.kind == "phi_known")
    assert known.what == f"known PHI value {mask(family)}"
    assert f"<<{mask(family)}>> agreed" in known.excerpt
    phones = [p.what for p in report.problems if p.kind == "phi_pattern" and p.sample_id == 0]
    assert sorted(phones) == [
        "PHONE pattern '1…' (11 chars)",
        "PHONE pattern '6…' (12 chars)",
    ]
    text = report.format()
    assert "[phi_known] shard-00000.lmdb sample 0 report: known PHI value" in text
    _assert_never_printed(report, [family, "617-555-0199", "13812345678", "Jane Smith"])


PRIVATE_KEPT = "private element kept (not in the policy's keep_private)"


def _edit_dicom(data: bytes, edit: Any) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    edit(ds)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_dicom_header_with_a_real_name_fails(
    clean_records: list[record_pb2.StudyRecord],
    packed_dataset: Path,
    planted: list[str],
    tmp_path: Path,
) -> None:
    dicom_name = sorted(v for v in planted if "^" in v)[0]

    def leak(ds: pydicom.Dataset) -> None:
        ds.PatientName = dicom_name
        ds.ReferencedImageSequence[0].add_new(0x00081070, "PN", "DOE^JOHN")  # nested
        ds.add_new(0x00091010, "LO", "vendor data")  # private, not allowed
        ds.add_new(0x00090010, "LO", "ACME 1.1")
        ds.ImageComments = "Patient: John Q. Public"  # free text with a pattern
        ds.PatientIdentityRemoved = "NO"

    records = _copy(clean_records)
    records[1].images[3].data = _edit_dicom(records[1].images[3].data, leak)
    report = verify_dataset(_one_shard_dataset(tmp_path / "ds", records, packed_dataset), planted)
    problems = [p for p in report.problems if p.sample_id == 1]
    assert len(problems) == len(report.problems)
    found = {(p.kind, p.where.split(" ", 2)[-1], p.what.split(" '")[0]) for p in problems}
    assert found == {
        ("dicom_deid", "(0012,0062) PatientIdentityRemoved", "is not YES"),
        ("dicom_deid", "(0010,0010) PatientName", "person name"),
        ("phi_known", "(0010,0010) PatientName", "known PHI value"),
        (
            "dicom_deid",
            "(0008,1140) ReferencedImageSequence[0] (0008,1070) OperatorsName",
            "person name",
        ),
        ("dicom_deid", "(0009,0010) private", PRIVATE_KEPT),
        ("dicom_deid", "(0009,1010) private", PRIVATE_KEPT),
        ("phi_pattern", "(0020,4000) ImageComments", "NAME pattern"),
    }  # fmt: skip
    assert all(p.where.startswith("images[3] img_0003.dcm ") for p in problems)
    _assert_never_printed(report, [dicom_name, "DOE^JOHN", "John Q. Public"])


def _edf_with_phi(path: Path) -> bytes:
    writer = pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders(
            [
                {"label": "ECG I", "dimension": "mV", "sample_frequency": 100,
                 "physical_max": 5.0, "physical_min": -5.0,
                 "digital_max": 32767, "digital_min": -32768},
                {"label": "ECG II", "dimension": "mV", "sample_frequency": 100,
                 "physical_max": 5.0, "physical_min": -5.0,
                 "digital_max": 32767, "digital_min": -32768},
            ]
        )  # fmt: skip
        writer.setPatientName("Rosalind_Thornbury")
        writer.setTechnician("Lorcan_Whitfield")
        writer.writeAnnotation(0.5, -1, "Call Dr. Jane Smith at 617-555-0142")
        writer.writeAnnotation(1.0, -1, "Lights off")
        t = np.arange(300) / 100
        writer.writeSamples([np.sin(t), np.cos(t)])
    finally:
        writer.close()
    return path.read_bytes()


def test_edf_header_and_annotation_phi_fail(
    clean_records: list[record_pb2.StudyRecord], packed_dataset: Path, tmp_path: Path
) -> None:
    records = _copy(clean_records)
    records[0].waveforms[0].data = _edf_with_phi(tmp_path / "phi.edf")
    known = ["Rosalind", "Thornbury", "Lorcan Whitfield"]
    report = verify_dataset(_one_shard_dataset(tmp_path / "ds", records, packed_dataset), known)
    found = {(p.kind, p.where.removeprefix("waveforms[0] wave_0000.edf "), p.what.split(" '")[0])
             for p in report.problems}  # fmt: skip
    assert found == {
        ("edf_deid", "patient", "EDF+ patient name subfield kept:"),
        ("edf_deid", "recording", "EDF+ recording technician subfield kept:"),
        ("phi_known", "patient", "known PHI value"),
        ("phi_known", "recording", "known PHI value"),
        ("phi_pattern", "annotation 1", "NAME pattern"),
        ("phi_pattern", "annotation 1", "PHONE pattern"),
    }
    assert sum(p.where.endswith("patient") and p.kind == "phi_known" for p in report.problems) == 2
    assert report.counts["records_decoded"] == 2  # the file itself decodes
    _assert_never_printed(report, ["Rosalind", "Thornbury", "Whitfield", "Jane Smith", "555-0142"])


def test_wfdb_header_comments_are_scanned(
    clean_records: list[record_pb2.StudyRecord], packed_dataset: Path, tmp_path: Path
) -> None:
    records = _copy(clean_records)
    header = (
        "rec1 1 250 2500 12:00:00 14/03/2023\n"
        "rec1.dat 16 200/mV 16 0 0 0 0 I\n"
        "# age: 61 sex: F\n"
        "# referring physician: Dr. Imogen Thackeray, MRN: 48213377\n"
    )
    records[0].waveforms.append(
        record_pb2.EncodedFile(format="wfdb", name="wave_0001.hea", data=header.encode())
    )
    report = verify_dataset(
        _one_shard_dataset(tmp_path / "ds", records, packed_dataset), ["14/03/2023"]
    )
    phi = sorted(
        (p.where.removeprefix("waveforms[1] wave_0001.hea "), p.what.split(" '")[0])
        for p in report.problems
        if p.kind.startswith("phi")
    )
    # the base date on the record line is a date by design: not a finding
    assert phi == [("comment line 4", "MRN pattern"), ("comment line 4", "NAME pattern")]
    assert [p.kind for p in report.problems if not p.kind.startswith("phi")] == ["decode"]


# -- known-PHI file, masking, CLI ---------------------------------------------------


def test_load_known_phi_formats(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(["Eleanor", "48213377"]))
    (tmp_path / "b.json").write_text(json.dumps({"Eleanor": "NAME"}))
    (tmp_path / "c.txt").write_text("# names\nEleanor\n\n  48213377  \n")
    assert load_known_phi(tmp_path / "a.json") == ["Eleanor", "48213377"]
    assert load_known_phi(tmp_path / "b.json") == ["Eleanor"]
    assert load_known_phi(tmp_path / "c.txt") == ["Eleanor", "48213377"]
    (tmp_path / "d.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"verify\.known_phi"):
        load_known_phi(tmp_path / "d.json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_known_phi(tmp_path / "missing.txt")
    assert mask(" Eleanor ") == "'E…' (7 chars)"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataengine.cli", "verify", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_cli_exit_codes_text_and_json(
    packed_dataset: Path, raw_corpus: Path, tmp_path: Path
) -> None:
    planted_file = str(raw_corpus / PHI_PLANTED_NAME)
    ok = _cli(str(packed_dataset), "--known-phi", planted_file)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"verify {packed_dataset}: OK\n")
    assert "known PHI values searched for" in ok.stdout

    ds = tmp_path / "ds"
    shutil.copytree(packed_dataset, ds)
    shard = ds / Manifest.load(ds).shards[0].file
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    bad = _cli(str(ds))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAILED" in bad.stdout.splitlines()[0]
    assert f"[shard_checksum] {shard.name}: SHA-256 is" in bad.stdout

    as_json = _cli(str(ds), "--json")
    assert as_json.returncode == 1
    body = json.loads(as_json.stdout)
    assert body["ok"] is False and body["problem_counts"]["shard_checksum"] == 1

    missing = _cli(str(ds), "--known-phi", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert "verify.known_phi" in missing.stderr
