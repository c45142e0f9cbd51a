"""dataengine.deid.edf: EDF/EDF+/BDF+ headers, signal labels and annotation
text, on files written by pyedflib; signals bit-identical."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyedflib
import pytest

from dataengine.deid import (
    DeidKey,
    DeidPolicy,
    date_shift_days,
    deidentify_edf,
    deidentify_edf_bytes,
    edf_known_phi,
    edf_patient_id,
)
from dataengine.errors import ConfigError, DecodeError
from dataengine.synth import PHI_PLANTED_NAME

KEY = DeidKey(b"medstream-test-deid-key")
REMOVE = DeidPolicy(date_mode="remove")
START = dt.datetime(2020, 5, 17, 13, 45, 10)
LABELS = ("EEG Fp1-REF", "ECG II", "Anna Berg", "SpO2")
ANNOTATIONS = (
    (0.5, -1.0, "Lights off"),
    (1.25, 0.5, "Seizure onset"),
    (2.0, -1.0, "Dr. Smith entered room"),
    (3.0, -1.0, "Sleep stage N2"),
)


pytestmark = pytest.mark.corpus(studies=1, seed=2, slices=1, rows=8, cols=8, ecg_seconds=3)


def _write_with_patient_fields(
    path: Path,
    file_type: int,
    labels: tuple[str, ...] = LABELS,
    annotations: tuple[tuple[float, float, str], ...] = ANNOTATIONS,
    start: dt.datetime = START,
    code: str = "MRN-12345",
) -> bytes:
    """A file of ``file_type`` written by pyedflib's ``EdfWriter`` with every
    patient and recording header field filled in, and ``annotations``."""
    bdf = file_type in (pyedflib.FILETYPE_BDF, pyedflib.FILETYPE_BDFPLUS)
    digital = 8388607 if bdf else 32767
    writer = pyedflib.EdfWriter(str(path), len(labels), file_type=file_type)
    try:
        writer.setSignalHeaders(
            [
                {
                    "label": label,
                    "dimension": "uV",
                    "sample_frequency": 100,
                    "physical_min": -500.0,
                    "physical_max": 500.0,
                    "digital_min": -digital - 1,
                    "digital_max": digital,
                    "transducer": "AgAgCl electrode",
                    "prefilter": "HP:0.1Hz LP:75Hz",
                }
                for label in labels
            ]
        )
        writer.setPatientCode(code)
        writer.setPatientName("Anna_Berg")
        writer.setBirthdate(dt.date(1970, 3, 4))
        writer.setSex(0)
        writer.setAdmincode("ADM-99")
        writer.setTechnician("Bob_Tech")
        writer.setEquipment("NK-1200")
        writer.setStartdatetime(start)
        rng = np.random.default_rng(0)
        writer.writeSamples([rng.normal(0.0, 50.0, 500) for _ in labels])
        for onset, duration, text in annotations:
            writer.writeAnnotation(onset, duration, text)
    finally:
        writer.close()
    return path.read_bytes()


def _read_all(path: Path) -> tuple[dict[str, Any], list[np.ndarray], list[str], list[str]]:
    reader = pyedflib.EdfReader(str(path))
    try:
        signals = [reader.readSignal(i, digital=True) for i in range(reader.signals_in_file)]
        notes = [str(t) for t in reader.readAnnotations()[2]]
        return reader.getHeader(), signals, reader.getSignalLabels(), notes
    finally:
        reader.close()


def _decoded(tmp_path: Path, data: bytes, name: str) -> tuple[Any, ...]:
    path = tmp_path / name
    path.write_bytes(data)
    return _read_all(path)


# -- the synthetic corpus ---------------------------------------------------------


def test_header_rewritten_signals_identical(raw: Path, tmp_path: Path) -> None:
    source = raw / "study_0000" / "ecg.edf"
    data = source.read_bytes()
    out = deidentify_edf_bytes(data, KEY, REMOVE)
    assert len(out) == len(data)
    assert out[8:88] == b"X X X X".ljust(80)
    assert out[88:168] == b"Startdate X X X X".ljust(80)
    assert out[168:184] == b"01.01.8500.00.00"
    assert out[:8] == data[:8] and out[184:256] == data[184:256]
    header, signals, labels, _ = _decoded(tmp_path, out, "clean.edf")
    _, original, original_labels, _ = _read_all(source)
    assert labels == original_labels and len(signals) == 12  # lead names are kept
    for a, b in zip(signals, original, strict=True):
        assert np.array_equal(a, b)
    for field in ("patientname", "patientcode", "technician", "admincode", "equipment"):
        assert header[field] in ("", "X"), field
    assert str(header["startdate"]).startswith("1985-01-01 00:00:00")
    planted = json.loads((raw / PHI_PLANTED_NAME).read_text())
    lowered = out.lower()
    assert [p for p in planted if p.lower().encode() in lowered] == []


def test_corpus_shift_matches_the_dicom_shift(raw: Path, tmp_path: Path) -> None:
    data = (raw / "study_0000" / "ecg.edf").read_bytes()
    mrn = edf_patient_id(data)
    out, stats = deidentify_edf(data, KEY)
    header, *_ = _decoded(tmp_path, out, "shifted.edf")
    original, *_ = _decoded(tmp_path, data, "orig.edf")
    shift = date_shift_days(KEY, mrn, 365)  # what the DICOM of this patient gets
    assert header["startdate"] == original["startdate"] + dt.timedelta(days=shift)
    assert stats.dates_shifted == 1 and stats.headers_rewritten == 1
    planted = json.loads((raw / PHI_PLANTED_NAME).read_text())
    assert [p for p in planted if p.lower().encode() in out.lower()] == []


def test_known_phi_from_the_header(raw: Path) -> None:
    data = (raw / "study_0000" / "ecg.edf").read_bytes()
    code, _sex, birth, name = data[8:88].decode().split()[:4]
    known = edf_known_phi(data)
    given, family = name.split("_")
    assert known[code] == "MRN"
    assert known[birth] == "DATE"
    _day, month, year = birth.split("-")
    assert any(v.endswith(year) and v.startswith(month.title()) for v in known)
    assert known[f"{given} {family}"] == known[family] == "NAME"
    assert edf_known_phi(deidentify_edf_bytes(data, KEY, REMOVE)) == {}
    assert edf_patient_id(data) == code


# -- EDF+ and BDF+ written by pyedflib, with annotations -------------------------


@pytest.mark.parametrize(
    ("file_type", "suffix"),
    [(pyedflib.FILETYPE_EDFPLUS, "edf"), (pyedflib.FILETYPE_BDFPLUS, "bdf")],
)
def test_edf_plus_and_bdf_plus(tmp_path: Path, file_type: int, suffix: str) -> None:
    data = _write_with_patient_fields(tmp_path / f"in.{suffix}", file_type)
    out, stats = deidentify_edf(data, KEY, DeidPolicy(), patient_id="MRN-12345")
    header, signals, labels, notes = _decoded(tmp_path, out, f"out.{suffix}")
    _, original, _, original_notes = _read_all(tmp_path / f"in.{suffix}")
    assert original_notes == [t for *_, t in ANNOTATIONS]
    # the free text naming a person goes; event vocabulary stays; onsets intact
    assert notes == ["Lights off", "Seizure onset", "[REDACTED]", "Sleep stage N2"]
    reader = pyedflib.EdfReader(str(tmp_path / f"out.{suffix}"))
    try:
        onsets, durations, _ = reader.readAnnotations()
    finally:
        reader.close()
    assert list(onsets) == [a[0] for a in ANNOTATIONS]
    assert list(durations) == [a[1] for a in ANNOTATIONS]
    assert stats.annotations_redacted == 1 and stats.annotations_kept == 3
    # a label that is a person's name becomes ch<N>; channel names stay
    assert labels == ["EEG Fp1-REF", "ECG II", "ch3", "SpO2"]
    assert stats.labels_replaced == 1
    for a, b in zip(signals, original, strict=True):
        assert np.array_equal(a, b)
    shift = date_shift_days(KEY, "MRN-12345", 365)
    assert header["startdate"] == START + dt.timedelta(days=shift)  # time of day kept
    for field in ("patientname", "patientcode", "technician", "admincode", "equipment"):
        assert header[field] in ("", "X"), field
    assert header["birthdate"] == ""
    lowered = out.lower()
    for secret in (b"anna", b"berg", b"smith", b"mrn-12345", b"adm-99", b"bob", b"1970"):
        assert secret not in lowered, secret
    assert b"agagcl electrode" in lowered and b"hp:0.1hz lp:75hz" in lowered


def test_remove_mode_and_default_patient(tmp_path: Path) -> None:
    data = _write_with_patient_fields(tmp_path / "in.edf", pyedflib.FILETYPE_EDFPLUS)
    assert edf_patient_id(data) == "MRN-12345"
    out, stats = deidentify_edf(data, KEY, DeidPolicy(date_mode="remove"))
    header, *_ = _decoded(tmp_path, out, "out.edf")
    assert header["startdate"] == dt.datetime(1985, 1, 1)
    assert stats.dates_removed == 1 and stats.dates_shifted == 0
    shifted = deidentify_edf_bytes(data, KEY)  # key, no policy: the default (shift)
    assert shifted == deidentify_edf_bytes(data, KEY, DeidPolicy(), patient_id="MRN-12345")
    other = deidentify_edf_bytes(data, KEY, DeidPolicy(), patient_id="SOMEONE-ELSE")
    assert other[168:176] != shifted[168:176]
    with pytest.raises(ConfigError, match=r"deid\.key"):
        deidentify_edf_bytes(data, None, DeidPolicy())


def test_a_shift_before_1985_gets_the_anonymous_date(tmp_path: Path) -> None:
    data = _write_with_patient_fields(
        tmp_path / "in.edf", pyedflib.FILETYPE_EDFPLUS, start=dt.datetime(1985, 1, 2)
    )
    out, stats = deidentify_edf(data, KEY, DeidPolicy(max_date_shift_days=3650))
    header, *_ = _decoded(tmp_path, out, "out.edf")
    assert header["startdate"] == dt.datetime(1985, 1, 1)
    assert stats.dates_removed == 1


def test_plain_edf_patient_field_and_reserved(tmp_path: Path) -> None:
    data = bytearray(
        _write_with_patient_fields(tmp_path / "in.edf", pyedflib.FILETYPE_EDF, annotations=())
    )
    data[8:88] = b"Anna Berg, born 4 March 1970".ljust(80)
    data[192:236] = b"exported by Anna".ljust(44)
    assert edf_patient_id(bytes(data)) == "Anna Berg, born 4 March 1970"
    known = edf_known_phi(bytes(data))
    assert known["Anna Berg, born 4 March 1970"] == "PHI" and "MRN" not in known.values()
    out = deidentify_edf_bytes(bytes(data), KEY)
    assert b"anna" not in out.lower()
    assert out[192:236] == b" " * 44
    _, signals, labels, _ = _decoded(tmp_path, out, "out.edf")
    assert labels == ["EEG Fp1-REF", "ECG II", "ch3", "SpO2"] and len(signals) == 4


def _annotation_span(data: bytes) -> tuple[int, int]:
    """Byte range of the annotation signal in data record 0 (the last signal)."""
    ns = int(data[252:256])
    base = 256 + ns * 216
    samples = [int(data[base + 8 * i : base + 8 * i + 8]) for i in range(ns)]
    start = 256 * (ns + 1) + 2 * sum(samples[:-1])
    return start, start + 2 * samples[-1]


def test_a_full_record_falls_back_to_a_short_placeholder(tmp_path: Path) -> None:
    data = bytearray(
        _write_with_patient_fields(
            tmp_path / "in.edf", pyedflib.FILETYPE_EDFPLUS, labels=("ECG I",), annotations=()
        )
    )
    start, stop = _annotation_span(bytes(data))
    timekeeping = bytes(data[start:stop]).split(b"\x00")[0] + b"\x00"
    tals = timekeeping
    while len(tals) + 9 <= stop - start:
        tals += b"+0.5\x14zq\x14\x00"  # a short text the vocabulary does not know
    data[start:stop] = tals.ljust(stop - start, b"\x00")
    out, stats = deidentify_edf(bytes(data), KEY)
    _, _, _, notes = _decoded(tmp_path, out, "out.edf")
    assert len(notes) == stats.annotations_redacted >= 5
    assert set(notes) == {"X"}  # "[REDACTED]" would not fit in the record


def test_trailing_bytes_are_dropped(tmp_path: Path) -> None:
    data = _write_with_patient_fields(tmp_path / "in.edf", pyedflib.FILETYPE_EDFPLUS)
    out, stats = deidentify_edf(data + b"Anna Berg was here", KEY)
    assert stats.trailing_bytes_dropped == 18
    assert out == deidentify_edf_bytes(data, KEY)


def test_malformed_input_is_a_decode_error(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="shorter than its 256-byte header"):
        deidentify_edf_bytes(b"0       short", KEY)
    with pytest.raises(DecodeError, match="not an EDF file"):
        deidentify_edf_bytes(b"BIOSEMI " + b" " * 300, KEY)
    data = _write_with_patient_fields(tmp_path / "in.edf", pyedflib.FILETYPE_EDFPLUS)
    with pytest.raises(DecodeError, match="truncated"):
        deidentify_edf_bytes(data[:-10], KEY)
    bad = bytearray(data)
    bad[252:256] = b"ab  "
    with pytest.raises(DecodeError, match="number of signals"):
        deidentify_edf_bytes(bytes(bad), KEY)
    bad = bytearray(data)
    bad[184:192] = b"256     "
    with pytest.raises(DecodeError, match="header bytes"):
        deidentify_edf_bytes(bytes(bad), KEY)
    bad = bytearray(data)
    start, _ = _annotation_span(data)
    bad[start : start + 4] = b"junk"
    with pytest.raises(DecodeError, match="malformed EDF\\+ annotation"):
        deidentify_edf_bytes(bytes(bad), KEY)


def test_corrupted_files_raise_only_decode_errors(tmp_path: Path) -> None:
    """Random byte damage and truncation: de-identified bytes or a
    DecodeError, never another exception."""
    data = _write_with_patient_fields(
        tmp_path / "in.edf", pyedflib.FILETYPE_EDFPLUS, labels=("C3", "Anna Berg")
    )
    rng = np.random.default_rng(3)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(300):
        damaged = bytearray(data)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
            damaged[int(pos)] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            damaged = damaged[: int(rng.integers(0, len(damaged)))]
        try:
            out = deidentify_edf_bytes(bytes(damaged), KEY)
            edf_known_phi(bytes(damaged))
        except DecodeError:
            outcomes["refused"] += 1
            continue
        outcomes["ok"] += 1
        assert b"anna" not in out.lower() and b"smith" not in out.lower()
    assert outcomes["ok"] > 0 and outcomes["refused"] > 0
