"""dataengine.formats.edf_header: the EDF/BDF header and annotation reader,
on files written by pyedflib (EDF+ and BDF+ with annotations)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyedflib
import pytest

from dataengine.errors import DecodeError
from dataengine.formats.edf_header import (
    ANNOTATION_LABELS,
    PATIENT,
    RECORDING,
    Tal,
    declared_records,
    field_text,
    is_plus,
    parse_tals,
    read_layout,
    sample_width,
    signal_count,
    signal_field,
    signal_headers,
    split_tals,
)

NOTES = ((0.5, -1.0, "Lights off"), (1.25, 0.5, "Seizure onset"))


def _edf_plus(path: Path, file_type: int = pyedflib.FILETYPE_EDFPLUS) -> bytes:
    """Two 100 Hz signals over 5 s, a patient name, and ``NOTES``."""
    bdf = file_type == pyedflib.FILETYPE_BDFPLUS
    digital = 8388607 if bdf else 32767
    writer = pyedflib.EdfWriter(str(path), 2, file_type=file_type)
    try:
        writer.setSignalHeaders(
            [
                {"label": label, "dimension": "mV", "sample_frequency": 100,
                 "physical_min": -5.0, "physical_max": 5.0,
                 "digital_min": -digital - 1, "digital_max": digital,
                 "transducer": "AgAgCl electrode", "prefilter": "HP:0.1Hz"}
                for label in ("ECG I", "ECG II")
            ]
        )  # fmt: skip
        writer.setPatientName("Anna_Berg")
        writer.setStartdatetime(dt.datetime(2020, 5, 17, 13, 45, 10))
        t = np.arange(500) / 100
        writer.writeSamples([np.sin(t), np.cos(t)])
        for onset, duration, text in NOTES:
            writer.writeAnnotation(onset, duration, text)
    finally:
        writer.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("file_type", "width"), [(pyedflib.FILETYPE_EDFPLUS, 2), (pyedflib.FILETYPE_BDFPLUS, 3)]
)
def test_header_fields_and_layout(tmp_path: Path, file_type: int, width: int) -> None:
    data = _edf_plus(tmp_path / "in.edf", file_type)
    assert sample_width(data) == width and is_plus(data)
    assert field_text(data[PATIENT]).split()[3] == "Anna_Berg"
    assert field_text(data[RECORDING]).startswith("Startdate 17-MAY-2020")
    assert signal_count(data) == 3
    signals = signal_headers(data)
    assert [s["label"] for s in signals][:2] == ["ECG I", "ECG II"]
    assert signals[2]["label"] in ANNOTATION_LABELS
    assert signals[0]["transducer"] == "AgAgCl electrode"
    assert signals[0]["physical dimension"] == "mV"
    assert field_text(data[signal_field(3, 1, "label")]) == "ECG II"
    layout = read_layout(data)
    assert layout.records == declared_records(data) and layout.bytes_per_sample == width
    assert layout.header_bytes == 256 * 4 and layout.end == len(data)
    assert layout.record_bytes * layout.records == len(data) - layout.header_bytes
    unknown = bytearray(data)
    unknown[236:244] = b"-1      "  # written while recording: as many records as the file holds
    assert declared_records(bytes(unknown)) == -1
    assert read_layout(bytes(unknown)).records == layout.records


def test_annotations_are_read_back(tmp_path: Path) -> None:
    data = _edf_plus(tmp_path / "in.edf")
    layout = read_layout(data)
    tals: list[Tal] = []
    for record, signal, span in layout.annotation_spans(data, [2]):
        assert signal == 2 and 0 <= record < layout.records
        tals += parse_tals(data[span], f"record {record}")
        # the unchecked split sees the same TALs: head, texts, the closing empty part
        assert [[t.head, *t.texts, b""] for t in parse_tals(data[span], "")] == split_tals(
            data[span]
        )
    texts = [text.decode() for tal in tals for text in tal.texts if text]
    assert texts == [text for *_, text in NOTES]
    assert all(tal.head.startswith(b"+") for tal in tals)


def test_annotation_spans_stop_at_a_partial_record(tmp_path: Path) -> None:
    data = _edf_plus(tmp_path / "in.edf")
    layout = read_layout(data)
    cut = data[: layout.header_bytes + layout.record_bytes + 1]
    assert [r for r, _, _ in layout.annotation_spans(cut, [2])] == [0]
    with pytest.raises(DecodeError, match="truncated"):
        read_layout(cut)


def test_malformed_headers_raise_decode_errors(tmp_path: Path) -> None:
    data = _edf_plus(tmp_path / "in.edf")
    with pytest.raises(DecodeError, match="shorter than its 256-byte header"):
        sample_width(data[:100])
    with pytest.raises(DecodeError, match="not an EDF file"):
        sample_width(b"BIOSEMI " + data[8:])
    bad = bytearray(data)
    bad[252:256] = b"ab  "
    with pytest.raises(DecodeError, match="number of signals"):
        signal_headers(bytes(bad))
    bad = bytearray(data)
    bad[184:192] = b"256     "
    with pytest.raises(DecodeError, match="header bytes"):
        signal_count(bytes(bad))
    with pytest.raises(DecodeError, match="shorter than its 1024-byte header"):
        signal_count(data[:600])
    bad = bytearray(data)
    bad[signal_field(3, 0, "samples per record")] = b"-5      "
    with pytest.raises(DecodeError, match="negative samples-per-record"):
        read_layout(bytes(bad))
    with pytest.raises(DecodeError, match=r"malformed EDF\+ annotation \(TAL\) in here"):
        parse_tals(b"junk\x14\x14\x00", "here")
    assert split_tals(b"junk\x14text\x00\x00") == [[b"junk", b"text"]]
