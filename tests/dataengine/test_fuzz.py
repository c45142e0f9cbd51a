"""Property-based fuzzing of every decoder and de-identifier that meets
untrusted bytes: mutated real files (bit flips, byte overwrites, boundary
integers, truncations, insertions, deletions, duplications) and random bytes
either decode or raise one of the project's documented errors
(``DataEngineError`` subclasses); nothing else escapes.

Seeds: pydicom's own test files (CT uncompressed, MR RLE, MR JPEG 2000
lossless, RGB JPEG baseline), a synthetic CT slice, an EDF+ written by
pyedflib, a WFDB record written by ``wfdb``, a synthetic report and a stored
record. Hypothesis runs derandomized (the same examples every run), so a
failure reproduces; for a longer local hunt, ``MEDSTREAM_FUZZ_SCALE=N``
multiplies the examples and ``MEDSTREAM_FUZZ_RANDOM=1`` draws new ones.

One file across formats, deid and shards: every test shares the seeds and the
mutation strategy below.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyedflib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from dataengine.deid.dicom import deidentify_dicom_bytes
from dataengine.deid.edf import deidentify_edf_bytes
from dataengine.deid.keys import DeidKey
from dataengine.deid.report import redact_report
from dataengine.deid.wfdb import WfdbFiles, deidentify_wfdb
from dataengine.errors import DataEngineError, DataLossError
from dataengine.formats.dicom import decode_series, read_dicom
from dataengine.formats.edf import decode_edf
from dataengine.formats.text import decode_report_bytes
from dataengine.formats.wfdb import decode_wfdb, parse_wfdb_header
from dataengine.shards import decode_record, encode_record, parse_record
from dataengine.synth import generate_corpus
from dataengine.v1 import record_pb2

# Garbage makes pydicom, pyedflib and wfdb warn about every odd field: expected here.
pytestmark = pytest.mark.filterwarnings("ignore")

KEY = DeidKey(b"medstream-fuzz-test-key-0123456789")
_SCALE = max(1, int(os.environ.get("MEDSTREAM_FUZZ_SCALE", "1")))
# pydicom test files that ship with the package (none is downloaded).
DICOM_SEEDS = (
    "CT_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
)
# Values that make length and count fields interesting: 0, 1, -1, sign bits.
_BOUNDARY_U32 = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def _fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples * _SCALE,
        deadline=None,
        derandomize=not os.environ.get("MEDSTREAM_FUZZ_RANDOM"),
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@st.composite
def mutated(draw: st.DrawFn, seed: bytes, hot: int = 1024) -> bytes:
    """``seed`` after 1-4 mutations, half of them within its first ``hot``
    bytes (where the headers are)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        limit = len(data) if draw(st.booleans()) else min(len(data), hot)
        pos = draw(st.integers(0, max(limit - 1, 0)))
        op = draw(st.sampled_from(("flip", "byte", "u32", "digit", "cut", "ins", "del", "dup")))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "u32":
            value = draw(st.sampled_from(_BOUNDARY_U32))
            data[pos : pos + 4] = struct.pack("<I", value)
        elif op == "digit" and data:  # ASCII headers (EDF, WFDB) hold numbers as text
            data[pos] = draw(st.sampled_from(b"0123456789 -+.eE"))
        elif op == "cut":
            del data[pos:]
        elif op == "ins":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif op == "del":
            del data[pos : pos + draw(st.integers(1, 256))]
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 256))]
    return bytes(data)


def _only_documented_errors(fn: Callable[[], object]) -> None:
    with contextlib.suppress(DataEngineError):
        fn()


# -- seeds ---------------------------------------------------------------------


@functools.cache
def dicom_seeds() -> tuple[bytes, ...]:
    files = [Path(str(get_testdata_file(name))).read_bytes() for name in DICOM_SEEDS]
    return (*files, _synth()["ct"])


@functools.cache
def _synth() -> dict[str, bytes]:
    """One synthetic study: a 16x16 CT slice, a 1 s ECG EDF+ and a report."""
    with tempfile.TemporaryDirectory(prefix="medstream-fuzz-") as tmp:
        raw = Path(tmp)
        generate_corpus(raw, studies=1, seed=3, slices=1, rows=16, cols=16, ecg_seconds=1)
        study = raw / "study_0000"
        return {
            "ct": (study / "ct_0000.dcm").read_bytes(),
            "ecg": (study / "ecg.edf").read_bytes(),
            "report": (study / "report.txt").read_bytes(),
        }


@functools.cache
def edf_seeds() -> tuple[bytes, ...]:
    """The synthetic ECG and a 3-channel EDF+ with an annotation from pyedflib."""
    with tempfile.TemporaryDirectory(prefix="medstream-fuzz-") as tmp:
        path = str(Path(tmp) / "eeg.edf")
        writer = pyedflib.EdfWriter(path, 3, file_type=pyedflib.FILETYPE_EDFPLUS)
        try:
            headers = []
            for label, rate in (("Fp1", 64), ("Fp2", 64), ("ECG", 128)):
                headers.append(
                    {
                        "label": label,
                        "dimension": "uV",
                        "sample_frequency": rate,
                        "physical_min": -500.0,
                        "physical_max": 500.0,
                        "digital_min": -32768,
                        "digital_max": 32767,
                    }
                )
            writer.setSignalHeaders(headers)
            writer.setPatientName("Doe^Jane")
            t = np.arange(128)
            signals = [np.sin(t[:64] / 5) * 100, np.cos(t[:64] / 7) * 100, np.sin(t / 3) * 200]
            writer.writeSamples([s.astype(np.float64) for s in signals])
            writer.writeAnnotation(0.5, -1, "spike")
        finally:
            writer.close()
        return (_synth()["ecg"], Path(path).read_bytes())


@functools.cache
def wfdb_seed() -> tuple[bytes, bytes]:
    """``(header, signal file)`` of a 2-signal, format-16 WFDB record ``rec``."""
    import wfdb

    with tempfile.TemporaryDirectory(prefix="medstream-fuzz-") as tmp:
        signal = np.stack([np.sin(np.arange(100) / 4), np.cos(np.arange(100) / 9)], axis=1)
        wfdb.wrsamp(
            "rec",
            fs=100,
            units=["mV", "mV"],
            sig_name=["I", "II"],
            p_signal=signal,
            fmt=["16", "16"],
            comments=["age: 61", "patient: Jane Doe"],
            write_dir=tmp,
        )
        return (Path(tmp, "rec.hea").read_bytes(), Path(tmp, "rec.dat").read_bytes())


@functools.cache
def record_seed() -> bytes:
    record = record_pb2.StudyRecord(
        sample_id=3,
        study_key="0123456789abcdef",
        images=[record_pb2.EncodedFile(format="dicom", name="img_0000.dcm", data=b"\1" * 64)],
        report="FINDINGS: none.",
        meta={"modality": "CT", "images": "1"},
    )
    return record.SerializeToString(deterministic=True)


def _draw_seed(data: st.DataObject, seeds: tuple[bytes, ...]) -> bytes:
    return seeds[data.draw(st.integers(0, len(seeds) - 1), label="seed")]


def test_unmutated_seeds_decode() -> None:
    """The fuzz properties below only mean something if the seeds they
    mutate are valid inputs in the first place."""
    for blob in dicom_seeds():
        hu = decode_series([blob]).hu
        assert hu.ndim == 3 and hu.shape[0] >= 1 and min(hu.shape[1:]) >= 16
    assert [decode_edf(blob).signals.shape[0] for blob in edf_seeds()] == [12, 3]
    header, dat = wfdb_seed()
    assert decode_wfdb(header, {"rec.dat": dat}).signals.shape[0] == 2
    assert decode_record(encode_record(parse_record(record_seed())), sample_id=3).report == (
        "FINDINGS: none."
    )


# -- DICOM -----------------------------------------------------------------------


@_fuzz_settings(200)
@given(st.data())
def test_dicom_decoders_raise_only_documented_errors(data: st.DataObject) -> None:
    blob = data.draw(mutated(_draw_seed(data, dicom_seeds())), label="file")
    _only_documented_errors(lambda: read_dicom(blob, name="fuzz.dcm"))
    _only_documented_errors(lambda: decode_series([blob], names=["fuzz.dcm"]))


@_fuzz_settings(80)
@given(st.data())
def test_dicom_series_with_one_mutated_slice(data: st.DataObject) -> None:
    good = _synth()["ct"]
    blob = data.draw(mutated(good), label="file")
    _only_documented_errors(lambda: decode_series([good, blob]))


@_fuzz_settings(150)
@given(st.data())
def test_dicom_deidentification_raises_only_documented_errors(data: st.DataObject) -> None:
    blob = data.draw(mutated(_draw_seed(data, dicom_seeds())), label="file")
    _only_documented_errors(lambda: deidentify_dicom_bytes(blob, KEY))


@_fuzz_settings(60)
@given(st.binary(max_size=600))
def test_dicom_random_bytes(blob: bytes) -> None:
    preamble = b"\0" * 128 + b"DICM"
    for candidate in (blob, preamble + blob):
        _only_documented_errors(lambda c=candidate: read_dicom(c))  # type: ignore[misc]
        _only_documented_errors(lambda c=candidate: decode_series([c]))  # type: ignore[misc]
        _only_documented_errors(lambda c=candidate: deidentify_dicom_bytes(c, KEY))  # type: ignore[misc]


# -- EDF -------------------------------------------------------------------------


@_fuzz_settings(200)
@given(st.data())
def test_edf_decoder_and_deidentification_raise_only_documented_errors(
    data: st.DataObject,
) -> None:
    blob = data.draw(mutated(_draw_seed(data, edf_seeds()), hot=1024), label="file")
    _only_documented_errors(lambda: decode_edf(blob))
    _only_documented_errors(lambda: deidentify_edf_bytes(blob, KEY))


@_fuzz_settings(50)
@given(st.binary(max_size=600))
def test_edf_random_bytes(blob: bytes) -> None:
    header = b"0       " + blob
    for candidate in (blob, header):
        _only_documented_errors(lambda c=candidate: decode_edf(c))  # type: ignore[misc]
        _only_documented_errors(lambda c=candidate: deidentify_edf_bytes(c, KEY))  # type: ignore[misc]


# -- WFDB ------------------------------------------------------------------------


@_fuzz_settings(120)
@given(st.data())
def test_wfdb_header_and_signal_file(data: st.DataObject) -> None:
    header, dat = wfdb_seed()
    if data.draw(st.booleans(), label="mutate header"):
        header = data.draw(mutated(header, hot=256), label="header")
    else:
        dat = data.draw(mutated(dat, hot=64), label="signal file")
    _only_documented_errors(lambda: parse_wfdb_header(header))
    _only_documented_errors(lambda: decode_wfdb(header, {"rec.dat": dat}))
    _only_documented_errors(
        lambda: deidentify_wfdb(WfdbFiles(header, {"rec.dat": dat}), KEY, record_name="wave_0000")
    )


# -- reports ---------------------------------------------------------------------


@_fuzz_settings(120)
@given(st.data())
def test_report_decoding_and_redaction(data: st.DataObject) -> None:
    seed = _synth()["report"]
    blob = data.draw(st.one_of(mutated(seed, hot=len(seed)), st.binary(max_size=300)))
    try:
        text = decode_report_bytes(blob)
    except DataEngineError:
        text = blob.decode("latin-1")
    redacted, counts = redact_report(text, {"Jane Doe": "NAME", "123456": "MRN"})
    assert isinstance(redacted, str) and all(v > 0 for v in counts.values())
    assert "123456" not in redacted


@_fuzz_settings(80)
@given(st.text(max_size=400))
def test_redaction_of_arbitrary_text(text: str) -> None:
    redacted, _ = redact_report(text, {"Jane Doe": "NAME"})
    assert "Jane Doe" not in redacted


_REPEATED = ("1", "1-", "1/", "12.", "Dr. ", "A ", "a@", "(555) ", "MRN ", "Jan 1, ", "\u5f20")


def test_redaction_of_pathological_repetitions() -> None:
    """Long runs of digits, separators and name-like words (regex backtracking)."""
    for piece in _REPEATED:
        text = piece * 4000
        redacted, _ = redact_report(text, {"Jane Doe": "NAME"})
        assert isinstance(redacted, str)


# -- stored records ----------------------------------------------------------------


@_fuzz_settings(150)
@given(st.data())
def test_stored_record_corruption_is_data_loss_or_decode(data: st.DataObject) -> None:
    raw = record_seed()
    value = encode_record(parse_record(raw))
    blob = data.draw(mutated(value, hot=len(value)), label="value")
    _only_documented_errors(lambda: decode_record(blob, sample_id=3))
    proto = data.draw(mutated(raw, hot=len(raw)), label="protobuf")
    _only_documented_errors(lambda: parse_record(proto, sample_id=3))


@pytest.mark.parametrize("cut", [0, 1, 4, 12, -1])
def test_truncated_record_value(cut: int) -> None:
    value = encode_record(parse_record(record_seed()))
    with pytest.raises(DataEngineError) as info:
        decode_record(value[:cut], sample_id=3)
    assert info.value.kind in ("data_loss", "decode") and info.value.sample_id == 3


def test_record_header_declaring_exabytes_is_data_loss_not_memory_error() -> None:
    """Found by this fuzzer: a bit flip in the zstd frame's content-size field
    made decompression try to allocate ~2**57 bytes (``MemoryError``)."""
    value = bytearray(encode_record(parse_record(record_seed())))
    header = b"(\xb5/\xfd\xf0\x9b\x1d\x03\x00\xc4\x05"  # a frame header declaring 2**57.6 bytes
    value[: len(header)] = header
    with pytest.raises(DataLossError, match="declares 218430921299402139 bytes") as info:
        decode_record(bytes(value), sample_id=3)
    assert info.value.sample_id == 3
