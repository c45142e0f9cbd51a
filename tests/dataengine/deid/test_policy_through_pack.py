"""The de-identification policy through ``pack_dataset`` and ``dataengine
pack``: one date shift per patient across a study's DICOM and EDF, the
manifest's deid section, burned-in images quarantined, CLI flags."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pydicom
import pyedflib
import pytest

from dataengine.cli import main
from dataengine.deid import PROFILE, DeidKey, DeidPolicy, date_shift_days, pseudonym
from dataengine.pack import QUARANTINE_NAME, PackConfig, pack_dataset
from dataengine.shards import Dataset, Manifest
from dataengine.v1 import record_pb2

KEY = DeidKey(b"medstream-test-deid-key")
SLICES = 2


def _burn_in(root: Path) -> None:
    """Flag one slice of study 1 as having burned-in annotation."""
    burned = root / "study_0001" / "ct_0001.dcm"
    ds = pydicom.dcmread(burned)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(burned)


pytestmark = pytest.mark.corpus(
    studies=2, seed=5, slices=SLICES, rows=16, cols=16, ecg_seconds=2, edit=_burn_in
)


def _records(out: Path) -> dict[str, record_pb2.StudyRecord]:
    by_key = {pseudonym(KEY, "study", f"study_{i:04d}"): f"study_{i:04d}" for i in range(2)}
    with Dataset(out) as ds:
        return {by_key[r.study_key]: r for r in (ds.read(i) for i in range(len(ds)))}


def _edf_start(data: bytes, tmp_path: Path) -> dt.datetime:
    path = tmp_path / "w.edf"
    path.write_bytes(data)
    reader = pyedflib.EdfReader(str(path))
    try:
        start = reader.getStartdatetime()
        assert isinstance(start, dt.datetime)
        return start
    finally:
        reader.close()


def test_pack_shifts_a_patients_dicom_and_edf_alike(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    config = PackConfig(key=KEY, workers=1, deid=DeidPolicy(max_date_shift_days=30))
    summary = pack_dataset(raw, out, config)
    original = pydicom.dcmread(raw / "study_0000" / "ct_0000.dcm")
    shift = date_shift_days(KEY, original.PatientID, 30)
    record = _records(out)["study_0000"]
    image = pydicom.dcmread(io.BytesIO(record.images[0].data))
    study_day = dt.datetime.strptime(original.StudyDate, "%Y%m%d")
    assert image.StudyDate == (study_day + dt.timedelta(days=shift)).strftime("%Y%m%d")
    assert image.LongitudinalTemporalInformationModified == "MODIFIED"
    start = _edf_start(record.waveforms[0].data, tmp_path)
    original_start = _edf_start((raw / "study_0000" / "ecg.edf").read_bytes(), tmp_path)
    assert start == original_start + dt.timedelta(days=shift)  # one shift per patient

    entries = [json.loads(x) for x in (out / QUARANTINE_NAME).read_text().splitlines()]
    burned = [e for e in entries if e["path"] == "study_0001/ct_0001.dcm"]
    assert burned and burned[0]["kind"] == "burned_in_annotation"
    assert burned[0]["exception"] == "BurnedInAnnotationError"
    assert "BurnedInAnnotation" in burned[0]["reason"]
    assert summary.quarantined.get("burned_in_annotation") == 1
    assert len(_records(out)["study_0001"].images) == SLICES - 1

    deid = Manifest.load(out).pack["deid"]
    assert deid["profile"] == PROFILE and deid["date_mode"] == "shift"
    assert deid["policy"] == DeidPolicy(max_date_shift_days=30).describe()
    images = 2 * SLICES - 1
    assert deid["dates_shifted"] == 4 * images + 2  # 4 DICOM dates each, 1 per EDF
    assert deid["dates_removed"] == images  # the birth dates
    assert deid["private_tags_removed"] == 5 * images and deid["private_tags_kept"] == 0
    assert deid["uids_remapped"] == 6 * images
    assert deid["edf_headers_rewritten"] == 2
    assert deid["dicom_elements_removed"] > 0 and deid["dicom_elements_emptied"] > 0
    text = summary.format()
    assert f"profile {PROFILE}, dates shifted" in text
    assert f"{deid['dates_shifted']} dates shifted" in text


def test_cli_flags_reach_the_policy(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["pack", str(raw), str(out), "--workers", "1", "--insecure-demo-key"]
    args += ["--date-mode", "remove", "--keep-private-tag", "0009,ACME 1.1,01"]
    args += ["--allow-burned-in", "--max-date-shift-days", "10"]
    assert main(args) == 0
    deid = Manifest.load(out).pack["deid"]
    assert deid["policy"] == {
        "date_mode": "remove",
        "max_date_shift_days": 10,
        "keep_private": ["0009,ACME 1.1,01"],
        "allow_burned_in": True,
    }
    assert (out / QUARANTINE_NAME).read_text() == ""  # the burned-in slice packed
    assert deid["private_tags_kept"] == 2 * SLICES and deid["dates_shifted"] == 0
    with Dataset(out) as ds:
        image = pydicom.dcmread(io.BytesIO(ds.read(0).images[0].data))
    assert image.StudyDate == "" and image.LongitudinalTemporalInformationModified == "REMOVED"
    private = {int(e.tag) for e in image if e.tag.is_private}
    assert private == {0x00090010, 0x00091001}
    assert main(["pack", str(raw), str(tmp_path / "bad"), "--insecure-demo-key",
                 "--keep-private-tag", "nonsense"]) == 2  # fmt: skip
