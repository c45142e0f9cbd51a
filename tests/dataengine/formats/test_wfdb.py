"""WFDB decoding: records written by the ``wfdb`` package (``wrsamp``), read
back from bytes through ``decode_wfdb``."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataengine.errors import DecodeError
from dataengine.formats.dispatch import decode_waveform
from dataengine.formats.waveform import STANDARD_12_LEAD, to_standard_12_lead
from dataengine.formats.wfdb import decode_wfdb, parse_wfdb_header, read_wfdb_record

with warnings.catch_warnings():  # wfdb 4.3 uses pandas APIs deprecated in pandas 3
    warnings.simplefilter("ignore", DeprecationWarning)
    import wfdb

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:wfdb")

RATE_HZ = 500
SECONDS = 4
# PTB-XL spells the augmented leads in capitals.
NAMES = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
PHI_COMMENT = "Age: 63 Sex: M Name: John Doe"
GAIN = 200.0  # ADC units per mV for the fixed-gain records: one step is 5 uV


def _lead_signals(rate: float = RATE_HZ, seconds: float = SECONDS) -> np.ndarray:
    """[samples, 12] distinct sines in mV (wfdb's layout)."""
    t = np.arange(int(rate * seconds)) / rate
    return np.stack(
        [(0.2 + 0.15 * k) * np.sin(2 * np.pi * (1.0 + 0.5 * k) * t + k) for k in range(12)], axis=1
    )


def _write_12_lead_record(
    folder: Path, name: str, fmt: str, **kwargs: object
) -> tuple[bytes, dict[str, bytes]]:
    """Write a 12-lead record with wfdb.wrsamp; return (header, {dat name: bytes})."""
    options: dict[str, object] = {"adc_gain": [GAIN] * 12, "baseline": [0] * 12}
    options.update(kwargs)
    wfdb.wrsamp(
        name,
        fs=RATE_HZ,
        units=["mV"] * 12,
        sig_name=NAMES,
        p_signal=_lead_signals(),
        fmt=[fmt] * 12,
        comments=[PHI_COMMENT],
        write_dir=str(folder),
        **options,
    )
    return (folder / f"{name}.hea").read_bytes(), {
        f"{name}.dat": (folder / f"{name}.dat").read_bytes()
    }


@pytest.fixture(scope="module")
def record16(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, bytes]]:
    return _write_12_lead_record(tmp_path_factory.mktemp("wfdb16"), "rec", "16")


@pytest.mark.parametrize("fmt", ["16", "212"])
def test_twelve_lead_record_decodes_to_physical_values(tmp_path: Path, fmt: str) -> None:
    header, files = _write_12_lead_record(tmp_path, "ecg01", fmt)

    w = decode_wfdb(header, files)

    assert w.labels == tuple(NAMES)
    assert w.units == ("mV",) * 12
    assert w.rates_hz == (500.0,) * 12
    assert [len(c) for c in w.channels] == [RATE_HZ * SECONDS] * 12
    # Stored as integers at 200 units/mV: within half a step of what was written.
    np.testing.assert_allclose(w.signals, _lead_signals().T, atol=0.5 / GAIN + 1e-6, rtol=0)
    assert float(np.abs(w.signals).max()) > 1.5  # the largest sine, 1.85 mV, survives 212's 12 bits


def test_automatic_gain_format_16(tmp_path: Path) -> None:
    """wrsamp's own gain choice (full 16-bit range per signal)."""
    header, files = _write_12_lead_record(tmp_path, "auto", "16", adc_gain=None, baseline=None)
    gains = [
        float(line.split()[2].split("(")[0].split("/")[0])
        for line in header.decode().splitlines()[1:13]
    ]

    w = decode_wfdb(header, files)

    for k in range(12):
        np.testing.assert_allclose(w.channels[k], _lead_signals()[:, k], atol=0.5 / gains[k] + 1e-6)


def test_standard_lead_order_and_resampling(record16: tuple[bytes, dict[str, bytes]]) -> None:
    header, files = record16

    leads, found = to_standard_12_lead(decode_wfdb(header, files), 100.0)

    assert found == (True,) * 12  # "AVR", "AVL", "AVF" recognized
    assert leads.shape == (12, 100 * SECONDS)
    t = np.arange(100 * SECONDS) / 100
    for k, lead in enumerate(STANDARD_12_LEAD):
        column = NAMES.index(lead.upper())
        expected = (0.2 + 0.15 * column) * np.sin(2 * np.pi * (1.0 + 0.5 * column) * t + column)
        np.testing.assert_allclose(leads[k][20:-20], expected[20:-20], atol=0.01)


def test_dispatch_and_read_from_disk(tmp_path: Path) -> None:
    header, files = _write_12_lead_record(tmp_path, "disk", "212")

    from_bytes = decode_waveform("wfdb", header, files)
    from_disk = read_wfdb_record(tmp_path / "disk.hea")

    np.testing.assert_array_equal(from_bytes.signals, from_disk.signals)
    assert from_disk.labels == tuple(NAMES)


def test_multi_frequency_record_keeps_each_rate(tmp_path: Path) -> None:
    """Samples per frame 2 and 1 at a 250 Hz frame rate: 500 and 250 Hz."""
    t_fast = np.arange(500 * SECONDS) / 500
    t_slow = np.arange(250 * SECONDS) / 250
    fast, slow = np.sin(2 * np.pi * 3 * t_fast), 0.5 * np.cos(2 * np.pi * 2 * t_slow)
    wfdb.wrsamp(
        "multi",
        fs=250,
        units=["mV", "mV"],
        sig_name=["II", "V5"],
        e_p_signal=[fast, slow],
        samps_per_frame=[2, 1],
        fmt=["16", "16"],
        adc_gain=[1000.0, 1000.0],
        baseline=[0, 0],
        write_dir=str(tmp_path),
    )

    w = read_wfdb_record(tmp_path / "multi.hea")

    assert w.rates_hz == (500.0, 250.0)
    np.testing.assert_allclose(w.channels[0], fast, atol=0.0005 + 1e-6)
    np.testing.assert_allclose(w.channels[1], slow, atol=0.0005 + 1e-6)
    leads, found = to_standard_12_lead(w, 100.0)
    assert found[1] and found[10] and leads.shape == (12, 100 * SECONDS)


def test_missing_samples_become_zero(tmp_path: Path) -> None:
    digital = np.array([[100], [-32768], [300]], dtype=np.int16)  # -32768: WFDB "missing" in fmt 16
    wfdb.wrsamp(
        "gap", fs=100, units=["mV"], sig_name=["I"], d_signal=digital, fmt=["16"],
        adc_gain=[100.0], baseline=[0], write_dir=str(tmp_path),
    )  # fmt: skip

    w = read_wfdb_record(tmp_path / "gap.hea")

    assert w.channels[0].tolist() == [1.0, 0.0, 3.0]


def test_header_structure_and_comments(record16: tuple[bytes, dict[str, bytes]]) -> None:
    parsed = parse_wfdb_header(record16[0])

    assert (parsed.record_name, parsed.n_signals, parsed.file_names) == ("rec", 12, ("rec.dat",))
    assert parsed.comments() == [PHI_COMMENT]
    assert len(parsed.signal_lines) == 12 and parsed.record_line == 0


def test_base_date_and_time_in_the_record_line_are_read(tmp_path: Path) -> None:
    header, files = _write_12_lead_record(
        tmp_path, "dated", "16", base_datetime=dt.datetime(2021, 3, 12, 10, 20, 30)
    )
    assert header.decode().splitlines()[0] == "dated 12 500 2000 10:20:30 12/03/2021"
    assert decode_wfdb(header, files).labels == tuple(NAMES)


# -- malformed input: DecodeError and nothing else ----------------------------


def test_truncated_signal_file(record16: tuple[bytes, dict[str, bytes]]) -> None:
    header, files = record16
    data = files["rec.dat"]
    for cut in (1, 24, 2400, len(data) - 1):
        with pytest.raises(DecodeError, match="cannot read WFDB record"):
            decode_wfdb(header, {"rec.dat": data[:-cut]})


def test_header_referencing_a_missing_file(
    record16: tuple[bytes, dict[str, bytes]], tmp_path: Path
) -> None:
    with pytest.raises(DecodeError, match=r"signal file 'rec\.dat', which is missing"):
        decode_wfdb(record16[0], {"other.dat": b"\0" * 100})
    (tmp_path / "rec.hea").write_bytes(record16[0])
    with pytest.raises(DecodeError, match=r"rec\.hea: header references signal file 'rec\.dat'"):
        read_wfdb_record(tmp_path / "rec.hea")


@pytest.mark.parametrize(
    "header,match",
    [
        (b"", "no record line"),
        (b"# only a comment\n", "no record line"),
        (b"garbage\n", "positive number of signals"),
        (b"rec zero 500\n", "positive number of signals"),
        (b"rec 2 500 10\nrec.dat 16 200/mV 16 0 0 0 0 I\n", "declares 2 signals but"),
        (b"rec/2 2 500 10\nseg1 5\nseg2 5\n", "multi-segment"),
        (b"../rec 1 500 10\nrec.dat 16\n", "record name"),
        (b"rec 1 500 10\n../etc/passwd 16\n", "not a plain file name"),
        (b"rec 1 500 10\n/abs/rec.dat 16\n", "not a plain file name"),
        (b"rec 1 500 10\nrec.dat 16\nstray line\n", "unexpected line 3"),
        ("réc 1 500 10\nrec.dat 16\n".encode(), "not ASCII"),
        (b"rec 1 500 10\nrec.dat 999\n", "cannot read WFDB record"),
    ],
)
def test_malformed_headers(header: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode_wfdb(header, {"rec.dat": b"\0" * 40})


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.tuples(st.integers(0, 400), st.sampled_from(b" 0123456789./:(-#aZ\n")), max_size=4)
)
def test_corrupt_header_gives_a_waveform_or_decode_error(
    record16: tuple[bytes, dict[str, bytes]], edits: list[tuple[int, int]]
) -> None:
    header = bytearray(record16[0])
    for offset, value in edits:
        header[offset % len(header)] = value
    try:
        w = decode_wfdb(bytes(header), record16[1])
    except DecodeError:
        return
    assert len(w.channels) == len(w.labels) == len(w.units) == len(w.rates_hz)
    assert all(c.dtype == np.float32 and np.isfinite(c).all() for c in w.channels)


def test_no_temporary_files_are_left(record16: tuple[bytes, dict[str, bytes]]) -> None:
    temp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()

    def leftovers() -> set[str]:
        return {n for n in os.listdir(temp_dir) if n.startswith("medstream-wfdb-")}

    before = leftovers()
    decode_wfdb(*record16)
    with pytest.raises(DecodeError):
        decode_wfdb(record16[0], {"rec.dat": record16[1]["rec.dat"][:-5]})
    assert leftovers() <= before
