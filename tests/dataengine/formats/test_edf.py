"""EDF decoding: files written by pyedflib (EDFlib) and the EDF+ test file
pyedflib ships, read back through ``decode_edf``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pyedflib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyedflib import highlevel

from dataengine.errors import DecodeError
from dataengine.formats.edf import (
    STANDARD_12_LEAD,
    Waveform,
    decode_edf,
    read_edf_file,
    to_standard_12_lead,
)

RATE_HZ = 500
SECONDS = 4
PHYS_MV = 5.0
# One digital step of a 16-bit EDF channel spanning +-5 mV.
EDF_STEP_MV = 2 * PHYS_MV / 65535
# Header of a 12-signal EDF+ file: 256 bytes, plus 256 per signal (12 + annotations).
HEADER_BYTES = 256 + 13 * 256

# Stored in a scrambled order with the spellings real exporters use.
FILE_LABELS = {
    "V3": "V3",
    "I": "ECG I",
    "aVR": "AVR",
    "II": "Lead II",
    "V1": "ECG V1",
    "III": "III",
    "aVF": "ECG aVF",
    "V6": "v6",
    "aVL": "aVL",
    "V2": "V2",
    "V5": "EKG V5",
    "V4": "V4",
}


def _lead_signal(lead: str, rate: float = RATE_HZ, seconds: float = SECONDS) -> np.ndarray:
    """A distinct sine per lead, in mV."""
    k = STANDARD_12_LEAD.index(lead)
    t = np.arange(int(rate * seconds)) / rate
    return (0.2 + 0.3 * k) * np.sin(2 * np.pi * (1.0 + 0.5 * k) * t + k)


def _header(label: str, rate: float, unit: str = "mV", phys: float = PHYS_MV) -> dict:
    return highlevel.make_signal_header(
        label, dimension=unit, sample_frequency=rate, physical_min=-phys, physical_max=phys
    )


def _write(path: Path, signals: list[np.ndarray], headers: list[dict]) -> bytes:
    header = {"annotations": [[0.5, -1, "QRS"]]}
    assert highlevel.write_edf(str(path), signals, headers, header=header)
    return path.read_bytes()


@pytest.fixture
def ecg_bytes(tmp_path: Path) -> bytes:
    leads = list(FILE_LABELS)
    return _write(
        tmp_path / "ecg.edf",
        [_lead_signal(lead) for lead in leads],
        [_header(FILE_LABELS[lead], RATE_HZ) for lead in leads],
    )


def test_twelve_lead_edf_plus_decodes_in_physical_units(ecg_bytes: bytes) -> None:
    w = decode_edf(ecg_bytes)

    leads = list(FILE_LABELS)
    assert w.labels == tuple(FILE_LABELS[lead] for lead in leads)  # annotations skipped
    assert w.units == ("mV",) * 12
    assert w.rate_hz == RATE_HZ
    assert w.signals.dtype == np.float32
    assert w.signals.shape == (12, RATE_HZ * SECONDS)
    for channel, lead in enumerate(leads):
        np.testing.assert_allclose(w.signals[channel], _lead_signal(lead), atol=EDF_STEP_MV)


def test_standard_12_lead_order_from_a_real_file(ecg_bytes: bytes) -> None:
    leads, found = to_standard_12_lead(decode_edf(ecg_bytes))

    assert found == (True,) * 12
    assert leads.dtype == np.float32
    assert leads.shape == (12, RATE_HZ * SECONDS)
    for k, lead in enumerate(STANDARD_12_LEAD):
        np.testing.assert_allclose(leads[k], _lead_signal(lead), atol=EDF_STEP_MV)


@pytest.mark.parametrize("suffix,step_mv", [(".edf", EDF_STEP_MV), (".bdf", 2 * PHYS_MV / 2**24)])
def test_edf_and_bdf_files_on_disk(tmp_path: Path, suffix: str, step_mv: float) -> None:
    path = tmp_path / f"two{suffix}"
    signals = [_lead_signal("II"), _lead_signal("V2")]
    headers = [_header("II", RATE_HZ), _header("V2", RATE_HZ)]
    if suffix == ".bdf":
        for h in headers:
            h["digital_min"], h["digital_max"] = -(2**23), 2**23 - 1
    _write(path, signals, headers)

    w = read_edf_file(path)

    assert w.labels == ("II", "V2")
    np.testing.assert_allclose(w.signals, np.stack(signals), atol=step_mv)


def test_mixed_rates_are_resampled_to_the_highest(tmp_path: Path) -> None:
    t_fast = np.arange(500 * SECONDS) / 500
    slow_rates = (250, 100)
    signals = [np.sin(2 * np.pi * 1.0 * t_fast)]
    signals += [np.cos(2 * np.pi * 1.0 * np.arange(r * SECONDS) / r) for r in slow_rates]
    headers = [_header("I", 500), _header("II", 250), _header("Resp", 100)]

    w = decode_edf(_write(tmp_path / "mixed.edf", signals, headers))

    assert w.rate_hz == 500.0
    assert w.signals.shape == (3, 500 * SECONDS)
    np.testing.assert_allclose(w.signals[0], signals[0], atol=EDF_STEP_MV)
    for channel, rate in enumerate(slow_rates, start=1):
        last_t = (rate * SECONDS - 1) / rate  # after the last sample np.interp holds it
        inside = t_fast <= last_t
        # Linear interpolation of a 1 Hz cosine: error <= (2 pi)^2 h^2 / 8.
        tolerance = (2 * np.pi) ** 2 / rate**2 / 8 + EDF_STEP_MV
        expected = np.cos(2 * np.pi * t_fast)
        np.testing.assert_allclose(w.signals[channel][inside], expected[inside], atol=tolerance)
        held = w.signals[channel][~inside]
        np.testing.assert_allclose(held, np.cos(2 * np.pi * last_t), atol=EDF_STEP_MV)


def test_pyedflib_test_generator_file() -> None:
    """The EDF+ file EDFlib's test generator wrote (shipped with pyedflib)."""
    w = read_edf_file(Path(pyedflib.data.get_generator_filename()))

    assert w.signals.shape == (11, 120_000)
    assert w.rate_hz == 200.0
    assert w.labels[:4] == ("squarewave", "ramp", "pulse", "noise")
    assert w.labels[4:] == tuple(
        f"sine {f} Hz" for f in ("1", "8", "8.1777", "8.5", "15", "17", "50")
    )
    assert w.units == ("uV",) * 11
    i = np.arange(120_000)
    sine_1hz = w.signals[w.labels.index("sine 1 Hz")]
    np.testing.assert_allclose(sine_1hz, 100 * np.sin(2 * np.pi * (i + 1) / 200), atol=0.05)
    for label, hz in (("sine 8 Hz", 8.0), ("sine 50 Hz", 50.0)):
        spectrum = np.abs(np.fft.rfft(w.signals[w.labels.index(label)]))
        assert np.fft.rfftfreq(120_000, d=1 / 200)[spectrum.argmax()] == pytest.approx(hz)
    np.testing.assert_allclose(np.unique(w.signals[0]), [-99.962, 99.992], atol=1e-3)  # +-100 uV


def test_zero_bytes_is_decode_error() -> None:
    with pytest.raises(DecodeError, match="empty"):
        decode_edf(b"")


@pytest.mark.parametrize("cut", [1, 100, 10_000])
def test_truncated_file_is_decode_error(ecg_bytes: bytes, cut: int) -> None:
    with pytest.raises(
        DecodeError, match=r"^EDF data: not a readable EDF/BDF file: the file is not"
    ):
        decode_edf(ecg_bytes[:-cut])


def test_garbage_is_decode_error() -> None:
    garbage = np.random.default_rng(0).bytes(5000)
    with pytest.raises(DecodeError, match="not a readable EDF/BDF file"):
        decode_edf(garbage)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(0, HEADER_BYTES - 1), st.integers(0, 255)), min_size=1, max_size=4
    )
)
def test_corrupt_header_bytes_give_a_waveform_or_decode_error(
    ecg_bytes: bytes, edits: list[tuple[int, int]]
) -> None:
    """Whatever happens to the header, only DecodeError escapes."""
    data = bytearray(ecg_bytes)
    for offset, value in edits:
        data[offset] = value
    try:
        w = decode_edf(bytes(data))
    except DecodeError:
        return
    assert w.signals.dtype == np.float32
    assert w.signals.shape[0] == len(w.labels) == len(w.units)


def test_missing_path_is_decode_error(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match=r"nope\.edf"):
        read_edf_file(tmp_path / "nope.edf")


def test_no_reader_or_temp_file_is_left_behind(ecg_bytes: bytes) -> None:
    temp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()

    def leftovers() -> set[str]:
        return {n for n in os.listdir(temp_dir) if n.startswith("medstream-")}

    before = leftovers()
    decode_edf(ecg_bytes)
    with pytest.raises(DecodeError):
        decode_edf(ecg_bytes[:-1])
    assert leftovers() <= before
    assert pyedflib.get_number_of_open_files() == 0


def _waveform(labels: tuple[str, ...], units: tuple[str, ...]) -> Waveform:
    signals = np.stack([np.full(3, k + 1, dtype=np.float32) for k in range(len(labels))])
    return Waveform(signals=signals, rate_hz=100.0, labels=labels, units=units)


def test_lead_labels_match_case_insensitively_and_missing_leads_are_zero() -> None:
    w = _waveform(("Lead II", "ECG avl", "resp", "EKG:V6", "ii"), ("mV", "mV", "mV", "mV", "mV"))

    leads, found = to_standard_12_lead(w)

    assert found == tuple(lead in ("II", "aVL", "V6") for lead in STANDARD_12_LEAD)
    assert leads[STANDARD_12_LEAD.index("II")].tolist() == [1.0] * 3  # first "II" wins
    assert leads[STANDARD_12_LEAD.index("aVL")].tolist() == [2.0] * 3
    assert leads[STANDARD_12_LEAD.index("V6")].tolist() == [4.0] * 3
    assert not leads[[not f for f in found]].any()


def test_leads_are_converted_to_millivolts() -> None:
    w = _waveform(("I", "II", "III", "V1"), ("uV", "V", "mV", ""))

    leads, _ = to_standard_12_lead(w)

    np.testing.assert_allclose(leads[0], 1e-3)  # 1 uV
    np.testing.assert_allclose(leads[1], 2e3)  # 2 V
    np.testing.assert_allclose(leads[2], 3.0)  # 3 mV
    np.testing.assert_allclose(leads[6], 4.0)  # no unit: taken as mV
