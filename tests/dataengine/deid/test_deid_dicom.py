"""dataengine.deid.dicom: PHI attributes, private tags, dates and UIDs."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dataengine.deid import DeidKey, deidentify_dicom, deidentify_dicom_bytes, dicom_known_phi
from dataengine.deid.dicom import PROFILE
from dataengine.errors import DeidError
from dataengine.synth import PHI_PLANTED_NAME, generate_corpus

KEY = DeidKey(b"medstream-test-deid-key")
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PHI_KEYWORDS = (
    "PatientTelephoneNumbers",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "OperatorsName",
    "StationName",
    "DeviceSerialNumber",
    "StudyDescription",
    "SeriesDescription",
)
_UID = re.compile(r"^2\.25\.(0|[1-9]\d*)$")


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    generate_corpus(root, studies=2, seed=1, slices=4, rows=32, cols=32, ecg_seconds=2)
    return root


def _series(raw: Path, study: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted((raw / f"study_{study:04d}").glob("ct_*.dcm"))]


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def test_phi_private_tags_and_dates_are_gone(raw: Path) -> None:
    original = _read(_series(raw, 0)[0])
    ds, stats = deidentify_dicom(_read(_series(raw, 0)[0]), KEY)
    for keyword in PHI_KEYWORDS:
        assert keyword not in ds, keyword
    assert str(ds.PatientName) == ds.PatientID != original.PatientID
    assert re.fullmatch(r"[0-9a-f]{16}", ds.PatientID)
    assert ds.AccessionNumber == "" and ds.StudyID == ""
    assert (
        ds.PatientBirthDate == ""
        and ds.StudyDate == ""
        and ds.ContentDate == ""
        and ds.StudyTime == ""
    )
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod.startswith(PROFILE)
    assert not any(e.tag.is_private for e in ds.iterall())
    assert stats.private_tags_removed == 5  # 3 at top level, 2 in a sequence item
    assert stats.uids_remapped == 6  # study, series, frame, SOP, referenced SOP, media SOP
    assert ds.PatientSex == original.PatientSex  # not identifying, kept
    # pixel data and the geometry the decoder needs are untouched
    assert ds.PixelData == original.PixelData
    assert np.array_equal(ds.pixel_array, original.pixel_array)
    for keyword in ("RescaleIntercept", "ImagePositionPatient", "PixelSpacing", "InstanceNumber"):
        assert ds[keyword].value == original[keyword].value


def test_no_planted_value_survives_in_the_bytes(raw: Path) -> None:
    planted = json.loads((raw / PHI_PLANTED_NAME).read_text())
    for study in (0, 1):
        for data in _series(raw, study):
            out = deidentify_dicom_bytes(data, KEY).lower()
            assert out[128:132] == b"dicm"
            leaked = [p for p in planted if p.lower().encode() in out]
            assert leaked == []


def test_uids_remapped_consistently(raw: Path) -> None:
    first = [_read(deidentify_dicom_bytes(d, KEY)) for d in _series(raw, 0)]
    again = [_read(deidentify_dicom_bytes(d, KEY)) for d in _series(raw, 0)]
    second = [_read(deidentify_dicom_bytes(d, KEY)) for d in _series(raw, 1)]
    originals = [_read(d) for d in _series(raw, 0)]
    for attr in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        values = {str(ds[attr].value) for ds in first}
        assert len(values) == 1, attr  # same input -> same output across files
        value = values.pop()
        assert _UID.match(value) and len(value) <= 64
        assert value != str(originals[0][attr].value)
        assert value != str(second[0][attr].value)  # different studies differ
    assert [ds.SOPInstanceUID for ds in first] == [ds.SOPInstanceUID for ds in again]
    assert len({ds.SOPInstanceUID for ds in first}) == len(first)
    for ds in first:
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == CT_STORAGE == ds.file_meta.MediaStorageSOPClassUID
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        ref = ds.ReferencedImageSequence[0]
        assert ref.ReferencedSOPClassUID == CT_STORAGE
    # the reference points at instance 1 before and after: links survive
    by_instance = {int(ds.InstanceNumber): ds.SOPInstanceUID for ds in first}
    assert {ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID for ds in first} == {
        by_instance[1]
    }


def test_known_phi_gathers_the_join_values(raw: Path) -> None:
    ds = _read(_series(raw, 0)[0])
    known = dicom_known_phi(ds)
    folded = {k.casefold(): v for k, v in known.items()}  # redaction ignores case
    family, given = str(ds.PatientName).split("^")
    assert known[str(ds.PatientName)] == "NAME"
    for form in (family, given, f"{given} {family}", f"{family}, {given}"):
        assert folded[form.casefold()] == "NAME", form
    doctor_family = str(ds.ReferringPhysicianName).split("^")[0]
    assert folded[doctor_family.casefold()] == "NAME"
    assert known[ds.PatientID] == "MRN"
    assert known[ds.AccessionNumber] == "ID"
    assert known[ds.InstitutionName] == "ORG"
    birth = ds.PatientBirthDate
    assert known[f"{birth[4:6]}/{birth[6:]}/{birth[:4]}"] == "DATE"


def test_garbage_is_a_deid_error() -> None:
    with pytest.raises(DeidError, match="not a readable DICOM"):
        deidentify_dicom_bytes(b"\x00" * 64 + b"garbage", KEY)
