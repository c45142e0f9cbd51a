"""dataengine.deid.keys: the secret key, keyed UID remapping and pseudonyms."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from dataengine.deid.keys import DeidKey, date_shift_days, load_key, pseudonym, remap_uid
from dataengine.errors import ConfigError

KEY = DeidKey(b"k" * 16)
OTHER = DeidKey(b"o" * 32)
PINNED_SHIFTS = [-55, -66, -210]
_UID = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$")


def test_key_needs_16_bytes_and_hides_its_secret() -> None:
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        DeidKey(b"short")
    with pytest.raises(ConfigError, match="must be bytes"):
        DeidKey("x" * 32)  # type: ignore[arg-type]
    assert "kkkk" not in repr(KEY)
    assert re.fullmatch(r"[0-9a-f]{16}", KEY.key_id)
    assert KEY.key_id != OTHER.key_id


def test_remap_uid_is_valid_deterministic_and_keyed() -> None:
    uid = "1.2.826.0.1.3680043.8.498.1234567890123456789"
    out = remap_uid(KEY, uid)
    assert out.startswith("2.25.")
    assert _UID.match(out) and len(out) <= 64
    assert remap_uid(KEY, uid) == out
    assert remap_uid(KEY, uid + "\x00") == out  # DICOM pads UIDs with NUL
    assert remap_uid(KEY, uid + "1") != out
    assert remap_uid(OTHER, uid) != out
    many = {remap_uid(KEY, f"1.2.3.{i}") for i in range(2000)}
    assert len(many) == 2000
    assert all(_UID.match(u) and len(u) <= 64 for u in many)


def test_pseudonym_is_short_hex_and_namespaced() -> None:
    p = pseudonym(KEY, "study", "study_0001")
    assert re.fullmatch(r"[0-9a-f]{16}", p)
    assert pseudonym(KEY, "study", "study_0001") == p
    assert pseudonym(KEY, "patient", "study_0001") != p
    assert pseudonym(OTHER, "study", "study_0001") != p


def test_load_key_from_file_env_or_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MEDSTREAM_DEID_KEY", raising=False)
    hex_file = tmp_path / "key.hex"
    hex_file.write_text("00112233445566778899aabbccddeeff\n")
    assert load_key(hex_file).secret == bytes.fromhex("00112233445566778899aabbccddeeff")
    raw_file = tmp_path / "key.bin"
    raw_file.write_bytes(b"\xff" * 20)
    assert load_key(raw_file).secret == b"\xff" * 20
    with pytest.raises(ConfigError, match=r"deid\.key_file"):
        load_key(tmp_path / "missing")
    with pytest.raises(ConfigError, match="MEDSTREAM_DEID_KEY"):
        load_key(None)
    monkeypatch.setenv("MEDSTREAM_DEID_KEY", "a-long-enough-passphrase-here")
    assert load_key(None).secret == b"a-long-enough-passphrase-here"
    monkeypatch.setenv("OTHER_VAR", "ff" * 16)
    assert load_key(None, env_var="OTHER_VAR").secret == b"\xff" * 16
    monkeypatch.delenv("MEDSTREAM_DEID_KEY")
    with caplog.at_level(logging.WARNING, logger="dataengine.deid.keys"):
        demo = load_key(None, insecure_demo=True)
    assert demo.insecure
    assert "insecure" in caplog.text.lower()


def test_date_shift_days_is_keyed_per_patient_and_never_zero() -> None:
    shifts = [date_shift_days(KEY, f"MRN-{i}", 30) for i in range(3000)]
    assert all(-30 <= s <= -1 for s in shifts)  # always back in time, never 0
    assert set(shifts) == set(range(-30, 0))  # spread over the whole range
    assert date_shift_days(KEY, "MRN-1", 30) == shifts[1]  # deterministic
    assert date_shift_days(KEY, " MRN-1\x00", 30) == shifts[1]  # padding ignored
    assert date_shift_days(KEY, "MRN-1", 1) == -1
    other = [date_shift_days(OTHER, f"MRN-{i}", 30) for i in range(3000)]
    assert other != shifts  # keyed
    big = date_shift_days(KEY, "MRN-1", 36500)
    assert -36500 <= big <= -1
    assert date_shift_days(KEY, "", 365) == date_shift_days(KEY, "  ", 365)
    for bad in (0, -5, True, 2.5):
        with pytest.raises(ConfigError, match="max_date_shift_days"):
            date_shift_days(KEY, "MRN-1", bad)  # type: ignore[arg-type]


def test_date_shift_days_is_pinned() -> None:
    # the report redactor and earlier pack runs depend on these exact values
    assert [date_shift_days(KEY, p, 365) for p in ("a", "b", "95891954")] == PINNED_SHIFTS
