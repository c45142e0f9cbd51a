"""dataengine.deid.edf: EDF header rewritten, signals bit-identical."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyedflib
import pytest

from dataengine.deid import deidentify_edf_bytes, edf_known_phi
from dataengine.errors import DeidError
from dataengine.synth import PHI_PLANTED_NAME, generate_corpus


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    generate_corpus(root, studies=1, seed=2, slices=1, rows=8, cols=8, ecg_seconds=3)
    return root


def _read_all(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    reader = pyedflib.EdfReader(str(path))
    try:
        return reader.getHeader(), [reader.readSignal(i) for i in range(reader.signals_in_file)]
    finally:
        reader.close()


def test_header_rewritten_signals_identical(raw: Path, tmp_path: Path) -> None:
    source = raw / "study_0000" / "ecg.edf"
    data = source.read_bytes()
    out = deidentify_edf_bytes(data)
    assert len(out) == len(data)
    assert out[8:88] == b"X X X X".ljust(80)
    assert out[88:168] == b"Startdate X X X X".ljust(80)
    assert out[168:184] == b"01.01.8500.00.00"
    assert out[:8] == data[:8] and out[184:] == data[184:]  # everything else untouched
    clean = tmp_path / "clean.edf"
    clean.write_bytes(out)
    header, signals = _read_all(clean)
    _, original = _read_all(source)
    assert len(signals) == 12
    for a, b in zip(signals, original, strict=True):
        assert np.array_equal(a, b)
    for field in ("patientname", "patientcode", "technician", "admincode", "equipment"):
        assert header[field] in ("", "X"), field
    assert str(header["startdate"]).startswith("1985-01-01 00:00:00")
    planted = json.loads((raw / PHI_PLANTED_NAME).read_text())
    lowered = out.lower()
    assert [p for p in planted if p.lower().encode() in lowered] == []


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
    assert edf_known_phi(deidentify_edf_bytes(data)) == {}


def test_not_edf_is_a_deid_error() -> None:
    with pytest.raises(DeidError, match="shorter than its 256-byte header"):
        deidentify_edf_bytes(b"0       short")
    with pytest.raises(DeidError, match="not an EDF file"):
        deidentify_edf_bytes(b"BIOSEMI " + b" " * 300)
