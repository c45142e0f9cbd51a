"""EDF/EDF+/BDF decoding: files written by pyedflib (EDFlib) and the test
files pyedflib ships, read back through ``decode_edf``; lead names and units
(``to_standard_12_lead``)."""

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
    edf_format,
    read_edf_file,
    to_standard_12_lead,
)
from dataengine.formats.waveform import lead_of, millivolt_scale

PYEDFLIB_DATA = Path(pyedflib.__file__).parent / "tests" / "data"

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


def _write_edf_plus(path: Path, signals: list[np.ndarray], headers: list[dict]) -> bytes:
    header = {"annotations": [[0.5, -1, "QRS"]]}
    assert highlevel.write_edf(str(path), signals, headers, header=header)
    return path.read_bytes()


@pytest.fixture
def ecg_bytes(tmp_path: Path) -> bytes:
    leads = list(FILE_LABELS)
    return _write_edf_plus(
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
    _write_edf_plus(path, signals, headers)

    w = read_edf_file(path)

    assert w.labels == ("II", "V2")
    np.testing.assert_allclose(w.signals, np.stack(signals), atol=step_mv)


def test_mixed_rates_keep_their_own_rates_and_resample_once_to_the_target(
    tmp_path: Path,
) -> None:
    t_fast = np.arange(500 * SECONDS) / 500
    slow_rates = (250, 100)
    signals = [np.sin(2 * np.pi * 1.0 * t_fast)]
    signals += [np.cos(2 * np.pi * 1.0 * np.arange(r * SECONDS) / r) for r in slow_rates]
    headers = [_header("I", 500), _header("II", 250), _header("Resp", 100)]

    w = decode_edf(_write_edf_plus(tmp_path / "mixed.edf", signals, headers))

    assert w.rates_hz == (500.0, 250.0, 100.0)
    assert [len(c) for c in w.channels] == [2000, 1000, 400]
    for channel, signal in zip(w.channels, signals, strict=True):  # as stored, no resampling
        np.testing.assert_allclose(channel, signal, atol=EDF_STEP_MV)
    assert w.rate_hz == 500.0 and w.duration_s == SECONDS
    assert w.signals.shape == (3, 500 * SECONDS)  # each slower channel upsampled once

    leads, found = to_standard_12_lead(w, 200.0)
    assert leads.shape == (12, 200 * SECONDS)
    assert found == tuple(lead in ("I", "II") for lead in STANDARD_12_LEAD)
    t = np.arange(200 * SECONDS) / 200
    inside = slice(20, -20)  # band-limited interpolation is exact away from the ends
    np.testing.assert_allclose(leads[0][inside], np.sin(2 * np.pi * t)[inside], atol=1e-3)
    np.testing.assert_allclose(leads[1][inside], np.cos(2 * np.pi * t)[inside], atol=1e-3)
    np.testing.assert_allclose(leads[0], np.sin(2 * np.pi * t), atol=0.02)  # ends too
    assert not leads[2:].any()  # "Resp" is not a lead


# pyedflib warns that "-8388608.0" has 10 characters; it writes "-8388608", exact.
@pytest.mark.filterwarnings("ignore:Physical m..imum for channel:UserWarning")
def test_bdf_plus_24_bit_values_beyond_the_16_bit_range(tmp_path: Path) -> None:
    """A BDF+ file (24-bit samples) written by pyedflib: digital values far
    outside +-32767 come back exactly (one digital step is 1 uV)."""
    path = tmp_path / "big.bdf"
    digital = np.array([0, 1, -1, 32767, 32768, -32769, 100_000, -1_234_567, 8_388_607, -8_388_607])
    digital = np.tile(digital, 100)  # 1000 samples: 4 s at 250 Hz
    step_uv = 1.0  # the physical range must fit EDF's 8 header characters
    writer = pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_BDFPLUS)
    try:
        for channel, label in enumerate(("ECG II", "ECG V1")):
            writer.setSignalHeader(
                channel,
                {
                    "label": label,
                    "dimension": "uV",
                    "sample_frequency": 250,
                    "physical_min": -8_388_608 * step_uv,
                    "physical_max": 8_388_607 * step_uv,
                    "digital_min": -8_388_608,
                    "digital_max": 8_388_607,
                },
            )
        writer.writeSamples([digital * step_uv, -digital * step_uv])
    finally:
        writer.close()
    data = path.read_bytes()

    w = decode_edf(data)

    assert edf_format(data) == "bdf" and data[:8] == b"\xffBIOSEMI"
    assert w.labels == ("ECG II", "ECG V1") and w.units == ("uV", "uV")
    assert w.rates_hz == (250.0, 250.0)
    np.testing.assert_allclose(w.channels[0], digital * step_uv, atol=step_uv / 2, rtol=0)
    np.testing.assert_allclose(w.channels[1], -digital * step_uv, atol=step_uv / 2, rtol=0)
    assert float(w.channels[0].max()) == 8_388_607.0  # 2^23 - 1 steps
    leads, found = to_standard_12_lead(w)
    assert found[1] and found[6]
    np.testing.assert_allclose(leads[1], digital * 1e-3, rtol=1e-6)  # uV -> mV


def test_pyedflib_shipped_bdf_plus_with_five_rates() -> None:
    """pyedflib's own BDF+ test file: 5 channels at 1000, 800, 500, 975 and
    999 Hz, 30 s, 24-bit, in uV."""
    w = read_edf_file(PYEDFLIB_DATA / "test_generator.bdf")

    assert w.labels == ("sine 5Hz", "square 13Hz", "ramp 7Hz", "pink noise", "white noise")
    assert w.rates_hz == (1000.0, 800.0, 500.0, 975.0, 999.0)
    assert [len(c) for c in w.channels] == [30_000, 24_000, 15_000, 29_250, 29_970]
    assert w.units == ("uV",) * 5
    i = np.arange(30_000)
    np.testing.assert_allclose(
        w.channels[0], 1000 * np.sin(2 * np.pi * 5 * (i + 1) / 1000), atol=0.01
    )
    assert set(np.unique(w.channels[1]).round(2)) == {-1000.0, 1000.0}  # square wave
    for channel in w.channels:
        assert -1200 < float(channel.min()) < -900 and 900 < float(channel.max()) < 1200
    # Every channel to 100 Hz, each from its own rate: 30 s -> 3000 samples.
    at_100 = w.at_rate(100.0)
    assert at_100.shape == (5, 3000)
    t = np.arange(3000) / 100
    np.testing.assert_allclose(
        at_100[0][20:-20], 1000 * np.sin(2 * np.pi * 5 * (t + 0.001))[20:-20], atol=1.0
    )


def test_plain_edf_lists_annotations_as_a_signal_and_it_is_skipped() -> None:
    """pyedflib's legacy EDF file: plain EDF with an "EDF Annotations" signal
    (57 Hz) among its 12 signals; it is not a channel."""
    w = read_edf_file(PYEDFLIB_DATA / "test_legacy.edf")

    assert len(w.channels) == 11 and "EDF Annotations" not in w.labels
    assert w.rates_hz == (200.0,) * 11
    assert w.labels[4] == "sine 1 Hz"
    i = np.arange(len(w.channels[4]))
    np.testing.assert_allclose(w.channels[4], 100 * np.sin(2 * np.pi * (i + 1) / 200), atol=0.05)


def test_pyedflib_test_generator_file() -> None:
    """The EDF+ file EDFlib's test generator wrote (shipped with pyedflib)."""
    w = read_edf_file(Path(pyedflib.data.get_generator_filename()))

    assert w.signals.shape == (11, 120_000)
    assert w.rates_hz == (200.0,) * 11
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
    channels = tuple(np.full(3, k + 1, dtype=np.float32) for k in range(len(labels)))
    return Waveform(channels=channels, rates_hz=(100.0,) * len(labels), labels=labels, units=units)


def test_lead_labels_match_case_insensitively_and_missing_leads_are_zero() -> None:
    w = _waveform(("Lead II", "ECG avl", "resp", "EKG:V6", "ii"), ("mV", "mV", "mV", "mV", "mV"))

    leads, found = to_standard_12_lead(w)

    assert found == tuple(lead in ("II", "aVL", "V6") for lead in STANDARD_12_LEAD)
    assert leads[STANDARD_12_LEAD.index("II")].tolist() == [1.0] * 3  # first "II" wins
    assert leads[STANDARD_12_LEAD.index("aVL")].tolist() == [2.0] * 3
    assert leads[STANDARD_12_LEAD.index("V6")].tolist() == [4.0] * 3
    assert not leads[[not f for f in found]].any()


@pytest.mark.parametrize(
    "label,lead",
    [
        ("I", "I"),
        ("ECG I", "I"),
        ("Lead II", "II"),
        ("lead_iii", "III"),
        ("DI", "I"),
        ("DII", "II"),
        ("DIII", "III"),
        ("aVR", "aVR"),
        ("AVR", "aVR"),
        ("a VL", "aVL"),
        ("EKG: aVF", "aVF"),
        ("MDC_ECG_LEAD_I", "I"),
        ("MDC_ECG_LEAD_AVR", "aVR"),
        ("MDC_ECG_LEAD_V1", "V1"),
        ("v1", "V1"),
        ("ECG V6", "V6"),
        ("ECG C3", "V3"),  # IEC chest-lead name after an ECG prefix
        ("  V4  ", "V4"),
        ("C3", None),  # a bare C3 is an EEG electrode
        ("EEG C3-A2", None),
        ("MLII", None),  # MIT-BIH modified lead II
        ("-aVR", None),  # inverted aVR (Cabrera)
        ("V4R", None),
        ("V2-V1", None),
        ("Resp", None),
        ("", None),
    ],
)
def test_lead_aliases(label: str, lead: str | None) -> None:
    assert lead_of(label) == lead


def test_leads_are_converted_to_millivolts_and_non_voltage_leads_left_out() -> None:
    w = _waveform(
        ("I", "II", "III", "V1", "V2", "V3", "V4"), ("uV", "V", "mV", "", "µV", "mmHg", "nV")
    )

    leads, found = to_standard_12_lead(w)

    np.testing.assert_allclose(leads[0], 1e-3)  # 1 uV
    np.testing.assert_allclose(leads[1], 2e3)  # 2 V
    np.testing.assert_allclose(leads[2], 3.0)  # 3 mV
    np.testing.assert_allclose(leads[6], 4.0)  # no unit: taken as mV
    np.testing.assert_allclose(leads[7], 5e-3)  # micro sign
    assert not found[8] and not leads[8].any()  # mmHg is not a voltage
    np.testing.assert_allclose(leads[9], 7e-6)  # nV
    assert millivolt_scale("MV") == 1.0 and millivolt_scale("degC") is None
