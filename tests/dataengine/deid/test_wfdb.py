"""WFDB header de-identification on records written by ``wfdb.wrsamp``."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pytest

from dataengine.deid import DeidKey
from dataengine.deid.wfdb import COMMENT_PLACEHOLDER, WfdbFiles, deidentify_wfdb, wfdb_known_phi
from dataengine.errors import DeidError
from dataengine.formats.wfdb import decode_wfdb

with warnings.catch_warnings():  # wfdb 4.3 uses pandas APIs deprecated in pandas 3
    warnings.simplefilter("ignore", DeprecationWarning)
    import wfdb

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:wfdb")

KEY = DeidKey(b"medstream-test-deid-key")

NAMES = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
COMMENTS = [
    "Age: 63 Sex: M Name: John Doe",
    "MRN: 4455667, DOB: 1961-02-03",
    "Dx: sinus rhythm",
]


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, bytes]]:
    """A 12-lead record named after the patient, with a base date and time."""
    folder = tmp_path_factory.mktemp("wfdb")
    t = np.arange(1000) / 500
    signal = np.stack([0.1 * (k + 1) * np.sin(2 * np.pi * (k + 1) * t) for k in range(12)], axis=1)
    wfdb.wrsamp(
        "doe_john_4455667",
        fs=500,
        units=["mV"] * 12,
        sig_name=NAMES,
        p_signal=signal,
        fmt=["16"] * 6 + ["212"] * 6,
        comments=COMMENTS,
        base_datetime=dt.datetime(2021, 3, 12, 10, 20, 30),
        write_dir=str(folder),
    )
    header = (folder / "doe_john_4455667.hea").read_bytes()
    return header, {p.name: p.read_bytes() for p in folder.glob("*.dat")}


def test_header_is_rewritten_and_signals_unchanged(record: tuple[bytes, dict[str, bytes]]) -> None:
    header, files = record
    original = header.decode().splitlines()

    cleaned, stats = deidentify_wfdb(WfdbFiles(header, files), KEY, record_name="wave_0000")
    clean, clean_files = cleaned.header, cleaned.companions

    lines = clean.decode("ascii").splitlines()
    assert lines[0] == "wave_0000 12 500 1000"  # base time and date gone
    # wfdb wrote one file per format (16, then 212): renamed in order of first use.
    renamed = {
        "doe_john_4455667_1.dat": "wave_0000.dat",
        "doe_john_4455667_2.dat": "wave_0000_1.dat",
    }
    assert sorted(files) == sorted(renamed)
    assert clean_files == {new: files[old] for old, new in renamed.items()}
    for old, new in zip(original[1:13], lines[1:13], strict=True):  # signal lines: only the file
        name = old.split()[0]
        assert new == renamed[name] + old[len(name) :]
    assert lines[13:] == [COMMENT_PLACEHOLDER]
    assert (stats.comments_removed, stats.fields_removed, stats.files_renamed) == (3, 2, 2)
    for phi in (b"John", b"Doe", b"doe_john", b"4455667", b"1961", b"2021", b"10:20:30", b"Age"):
        assert phi.lower() not in clean.lower()

    before, after = decode_wfdb(header, files), decode_wfdb(clean, clean_files)
    assert after.labels == before.labels == tuple(NAMES)
    assert after.rates_hz == before.rates_hz
    for a, b in zip(after.channels, before.channels, strict=True):
        np.testing.assert_array_equal(a, b)


def test_several_signal_files_are_renamed_consistently() -> None:
    header = (
        b"holter 3 250 4\n"
        b"holter_a.dat 16 200/mV 16 0 0 0 0 ECG II\n"
        b"holter_b.dat 16 200/mV 16 0 0 0 0 ECG V5\n"
        b"holter_a.dat 16 200/mV 16 0 0 0 0 ECG V1\n"
    )
    files = {"holter_a.dat": bytes(16), "holter_b.dat": bytes(8), "stray.dat": b"x"}

    cleaned, stats = deidentify_wfdb(WfdbFiles(header, files), KEY, record_name="wave_0003")
    clean, clean_files = cleaned.header, cleaned.companions

    assert clean.decode().splitlines() == [
        "wave_0003 3 250 4",
        "wave_0003.dat 16 200/mV 16 0 0 0 0 ECG II",
        "wave_0003_1.dat 16 200/mV 16 0 0 0 0 ECG V5",
        "wave_0003.dat 16 200/mV 16 0 0 0 0 ECG V1",
    ]
    assert clean_files == {"wave_0003.dat": bytes(16), "wave_0003_1.dat": bytes(8)}
    assert stats.comments_removed == 0


def test_known_phi_from_comments_and_base_date(record: tuple[bytes, dict[str, bytes]]) -> None:
    phi = wfdb_known_phi(record[0])

    assert phi["John Doe"] == "NAME" and phi["Doe"] == "NAME"
    assert phi["4455667"] == "MRN"
    assert phi["1961-02-03"] == "DATE" and phi["February 3, 1961"] == "DATE"
    assert phi["2021-03-12"] == "DATE"  # the record line's base date
    assert "sinus rhythm" not in phi and "63" not in phi


def test_missing_signal_file_and_bad_header_are_refused(
    record: tuple[bytes, dict[str, bytes]],
) -> None:
    with pytest.raises(DeidError, match=r"signal file 'doe_john_4455667\S*\.dat', which is not in"):
        deidentify_wfdb(WfdbFiles(record[0], {}), KEY, record_name="wave_0000")
    with pytest.raises(DeidError, match=r"cannot de-identify WFDB header: .*no record line"):
        deidentify_wfdb(WfdbFiles(b"# only a comment\n", {}), KEY, record_name="wave_0000")
    with pytest.raises(ValueError, match="plain file name"):
        deidentify_wfdb(WfdbFiles(*record), KEY, record_name="../x")
    assert wfdb_known_phi(b"\xff\xfe garbage") == {}
