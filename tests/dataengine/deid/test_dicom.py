"""dataengine.deid.dicom: the PS3.15 Annex E Basic Profile on synthetic
corpus files and on pydicom's bundled real files (CT_small, MR_small, rtplan,
nested_priv_SQ, priv_SQ, UN_sequence)."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from dataengine.deid import (
    DeidKey,
    DeidPolicy,
    date_shift_days,
    deidentify_dicom,
    deidentify_dicom_bytes,
    dicom_known_phi,
    dicom_to_bytes,
    remap_uid,
)
from dataengine.deid.dicom import PROFILE, non_phi_kinds
from dataengine.errors import BurnedInAnnotationError, DeidError
from dataengine.synth import PHI_PLANTED_NAME

KEY = DeidKey(b"medstream-test-deid-key")
REMOVE = DeidPolicy(date_mode="remove")
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PHI_KEYWORDS = (
    "PatientTelephoneNumbers",
    "InstitutionAddress",
    "StudyDescription",
    "SeriesDescription",
)
_UID = re.compile(r"^2\.25\.(0|[1-9]\d*)$")


pytestmark = pytest.mark.corpus(studies=2, seed=1, slices=4, rows=32, cols=32, ecg_seconds=2)


def _series(raw: Path, study: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted((raw / f"study_{study:04d}").glob("ct_*.dcm"))]


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _bundled(name: str) -> pydicom.Dataset:
    path = get_testdata_file(name)
    assert path is not None, name
    return pydicom.dcmread(path)


def _shifted(da: str, days: int) -> str:
    return (dt.datetime.strptime(da, "%Y%m%d").date() + dt.timedelta(days=days)).strftime("%Y%m%d")


def _codes(ds: Dataset) -> list[tuple[str, str]]:
    return [(i.CodeValue, i.CodingSchemeDesignator) for i in ds.DeidentificationMethodCodeSequence]


# -- the synthetic corpus ------------------------------------------------------


def test_corpus_phi_gone_dates_shifted(raw: Path) -> None:
    original = _read(_series(raw, 0)[0])
    ds, stats = deidentify_dicom(_read(_series(raw, 0)[0]), KEY)
    for keyword in PHI_KEYWORDS:
        assert keyword not in ds, keyword
    # X/Z/D and Z: kept present, emptied
    for keyword in ("InstitutionName", "StationName", "DeviceSerialNumber", "OperatorsName"):
        assert ds[keyword].value in ("", None), keyword
    assert ds.ReferringPhysicianName == "" and ds.AccessionNumber == "" and ds.StudyID == ""
    assert ds.PatientSex == ""  # Basic Profile: Z
    assert str(ds.PatientName) == ds.PatientID != original.PatientID
    assert re.fullmatch(r"[0-9a-f]{16}", ds.PatientID)
    assert "SourceApplicationEntityTitle" not in ds.file_meta
    shift = date_shift_days(KEY, original.PatientID, 365)
    assert -365 <= shift <= -1
    for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        assert ds[keyword].value == _shifted(original[keyword].value, shift), keyword
    assert ds.StudyTime == original.StudyTime  # times of day kept with modified dates
    assert ds.PatientBirthDate == ""  # Z even when shifting
    assert stats.dates_shifted == 4 and stats.dates_removed == 1
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod.startswith(PROFILE)
    assert _codes(ds) == [("113100", "DCM"), ("113107", "DCM")]
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert not any(e.tag.is_private for e in ds.iterall())
    assert stats.private_tags_removed == 5  # 3 at top level, 2 in a sequence item
    assert stats.uids_remapped == 6  # study, series, frame, SOP, referenced SOP, media SOP
    # pixel data and the geometry the decoder needs are untouched
    assert ds.PixelData == original.PixelData
    assert np.array_equal(ds.pixel_array, original.pixel_array)
    for keyword in ("RescaleIntercept", "ImagePositionPatient", "PixelSpacing", "InstanceNumber"):
        assert ds[keyword].value == original[keyword].value


def test_corpus_remove_mode(raw: Path) -> None:
    ds, stats = deidentify_dicom(_read(_series(raw, 0)[0]), KEY, REMOVE)
    assert ds.StudyDate == "" and ds.StudyTime == "" and ds.ContentDate == ""
    assert ds.AcquisitionDate == ""  # X/Z -> emptied
    assert "SeriesDate" not in ds and "SeriesTime" not in ds  # X/D -> removed
    assert stats.dates_shifted == 0 and stats.dates_removed == 9
    assert _codes(ds) == [("113100", "DCM")]
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


@pytest.mark.parametrize("policy", [DeidPolicy(), REMOVE], ids=["shift", "remove"])
def test_no_planted_value_survives_in_the_bytes(raw: Path, policy: DeidPolicy) -> None:
    planted = json.loads((raw / PHI_PLANTED_NAME).read_text())
    for study in (0, 1):
        for data in _series(raw, study):
            out = deidentify_dicom_bytes(data, KEY, policy).lower()
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
    ds.OtherPatientIDsSequence = Sequence([Dataset()])
    ds.OtherPatientIDsSequence[0].PatientID = "OTHER-77"
    ds.AdmissionID = "ADM-555"
    ds.ReferringPhysicianTelephoneNumbers = "555-0100"
    known = dicom_known_phi(ds)
    folded = {k.casefold(): v for k, v in known.items()}  # redaction ignores case
    family, given = str(ds.PatientName).split("^")
    assert known[str(ds.PatientName)] == "NAME"
    for form in (family, given, f"{given} {family}", f"{family}, {given}"):
        assert folded[form.casefold()] == "NAME", form
    doctor_family = str(ds.ReferringPhysicianName).split("^")[0]
    assert folded[doctor_family.casefold()] == "NAME"
    assert folded[str(ds.OperatorsName).split("^")[0].casefold()] == "NAME"
    assert known[ds.PatientID] == "MRN" and known["OTHER-77"] == "MRN"  # nested too
    assert known[ds.AccessionNumber] == "ID" and known["ADM-555"] == "ID"
    assert known[ds.InstitutionName] == "ORG"
    assert known["555-0100"] == "PHONE"
    assert known[ds.StationName] == "ID"
    birth = ds.PatientBirthDate
    assert known[f"{birth[4:6]}/{birth[6:]}/{birth[:4]}"] == "DATE"
    study = ds.StudyDate
    assert known[f"{study[:4]}-{study[4:6]}-{study[6:]}"] == "DATE"


# -- pydicom's bundled real files ---------------------------------------------


def test_ct_small_keeps_only_the_allow_listed_private_element() -> None:
    original = _bundled("CT_small.dcm")
    gems_acqu = [
        e for e in original if e.tag.group == 0x0019 and e.tag.element >= 0x1000
    ]  # (0019,10xx) under creator GEMS_ACQU_01 at block 0x10
    assert original[0x00190010].value == "GEMS_ACQU_01" and gems_acqu
    policy = DeidPolicy(keep_private=("0019,GEMS_ACQU_01,02",))
    ds, stats = deidentify_dicom(_bundled("CT_small.dcm"), KEY, policy)
    private = {int(e.tag): e.value for e in ds if e.tag.is_private}
    assert private == {0x00190010: "GEMS_ACQU_01", 0x00191002: original[0x00191002].value}
    assert stats.private_tags_kept == 1
    n_private = sum(1 for e in original if e.tag.is_private)
    assert stats.private_tags_removed == n_private - 2
    assert ("113111", "DCM") in _codes(ds)  # Retain Safe Private Option
    # same element in a file whose writer chose another block: still found
    moved = _bundled("CT_small.dcm")
    value = moved[0x00191002].value
    for tag in [t for t in list(moved.keys()) if t.group == 0x0019]:
        del moved[tag]
    moved.add_new(0x00190030, "LO", "SOMEONE_ELSE")
    moved.add_new(0x00191002, "SL", 12345)  # (0019,1002) now under SOMEONE_ELSE
    moved.add_new(0x00190042, "LO", "GEMS_ACQU_01")
    moved.add_new(0x00194202, "SL", value)
    out, _ = deidentify_dicom(moved, KEY, policy)
    private = {int(e.tag): e.value for e in out if e.tag.is_private}
    assert private == {0x00190042: "GEMS_ACQU_01", 0x00194202: value}
    written = _read(dicom_to_bytes(out))
    assert written[0x00194202].value == value


def test_ct_small_dates_markers_and_roundtrip() -> None:
    original = _bundled("CT_small.dcm")
    ds, stats = deidentify_dicom(_bundled("CT_small.dcm"), KEY)
    shift = date_shift_days(KEY, original.PatientID, 365)
    assert ds.StudyDate == _shifted(original.StudyDate, shift)
    assert ds.InstanceCreationDate == _shifted(original.InstanceCreationDate, shift)
    assert ds.InstanceCreationTime == original.InstanceCreationTime
    assert "InstitutionName" in ds and ds.InstitutionName == ""
    assert ds.Manufacturer == original.Manufacturer  # not identifying: kept
    assert ds.InstanceCreatorUID != original.InstanceCreatorUID
    assert _UID.match(ds.InstanceCreatorUID)
    back = _read(dicom_to_bytes(ds))
    assert np.array_equal(back.pixel_array, original.pixel_array)
    assert back.PatientIdentityRemoved == "YES"
    assert stats.uids_remapped == 6


def test_mr_small_free_text_and_names() -> None:
    original = _bundled("MR_small.dcm")
    assert original.ImageComments and original.TimezoneOffsetFromUTC
    ds, _ = deidentify_dicom(_bundled("MR_small.dcm"), KEY, REMOVE)
    assert "ImageComments" not in ds  # X
    assert "TimezoneOffsetFromUTC" not in ds  # X
    assert "NameOfPhysiciansReadingStudy" not in ds  # X
    assert ds.OperatorsName == ""  # X/Z/D -> emptied
    assert ds.StudyDate == "" and "InstanceCreationDate" not in ds  # Z / X/D
    assert ds.InstanceCreationTime == ""  # X/Z/D
    assert ds.ContrastBolusAgent == ""  # Z/D
    assert ds.FrameOfReferenceUID != original.FrameOfReferenceUID


def test_rtplan_nested_sequences() -> None:
    original = _bundled("rtplan.dcm")
    ds, _ = deidentify_dicom(_bundled("rtplan.dcm"), KEY)
    shift = date_shift_days(KEY, original.PatientID, 365)
    assert ds.RTPlanLabel == "ANONYMIZED"  # D
    assert "RTPlanName" not in ds  # X
    assert ds.RTPlanDate == _shifted(original.RTPlanDate, shift)  # X/D, option: shifted
    assert ds.RTPlanTime == original.RTPlanTime
    for item in ds.DoseReferenceSequence:
        assert "DoseReferenceDescription" not in item  # X, nested
    machine = ds.BeamSequence[0]
    assert machine.TreatmentMachineName == ""  # X/Z, nested
    assert "InstitutionalDepartmentName" not in machine
    assert machine.DeviceSerialNumber == ""  # X/Z/D, nested
    refs = [e for e in ds.iterall() if e.keyword == "ReferencedSOPInstanceUID"]
    old = [e for e in original.iterall() if e.keyword == "ReferencedSOPInstanceUID"]
    assert refs and [e.value for e in refs] == [remap_uid(KEY, e.value) for e in old]
    classes = [e.value for e in ds.iterall() if e.keyword == "ReferencedSOPClassUID"]
    assert all(c.startswith("1.2.840.10008.") for c in classes)  # classes kept


@pytest.mark.parametrize("name", ["nested_priv_SQ.dcm", "priv_SQ.dcm", "UN_sequence.dcm"])
def test_private_sequences_are_removed(name: str) -> None:
    original = _bundled(name)
    n_top = sum(1 for e in original if e.tag.is_private)
    assert n_top
    ds, stats = deidentify_dicom(_bundled(name), KEY)
    assert not any(e.tag.is_private for e in ds.iterall())
    assert stats.private_tags_removed == n_top
    # the standard references hidden in UN_sequence's private item went with it
    assert "StudyInstanceUID" not in ds


def test_software_versions_are_kept_and_their_dates_are_not_phi() -> None:
    """PS3.15 Table E.1-1 lists neither SoftwareVersions nor
    ImplementationVersionName: kept, build dates and all (examples_palette:
    Philips writes "...__[2010/06/30]-07:41:13"); ``non_phi_kinds`` is the
    rule verify reads."""
    original = _bundled("examples_palette.dcm")
    assert any("2010/06/30" in v for v in original.SoftwareVersions)
    ds, _ = deidentify_dicom(_bundled("examples_palette.dcm"), KEY)
    assert list(ds.SoftwareVersions) == list(original.SoftwareVersions)
    meta = ds.file_meta
    assert meta.ImplementationVersionName == original.file_meta.ImplementationVersionName
    assert non_phi_kinds(0x00181020) == non_phi_kinds(0x00020013) == {"DATE"}
    assert non_phi_kinds(0x00100020) == non_phi_kinds(0x00081030) == set()  # PatientID, ...
    # kept, but never as a value that cannot be parsed (verify refuses UN)
    unknown = _bundled("CT_small.dcm")
    unknown[0x00181020] = RawDataElement(
        Tag(0x00181020), "UN", 14, b"V1 2010-06-30 ", 0, False, True
    )
    pydicom.config.replace_un_with_known_vr = False
    try:
        assert unknown[0x00181020].VR == "UN"
        ds, _ = deidentify_dicom(unknown, KEY)
    finally:
        pydicom.config.replace_un_with_known_vr = True
    assert "SoftwareVersions" not in ds


# -- Annex E actions on a planted dataset --------------------------------------


def _planted() -> Dataset:
    ds = Dataset()
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "MRN-4242"
    ds.PatientBirthDate = "19700304"
    ds.PatientBirthTime = "101500"
    ds.PatientAge = "053Y"
    ds.PatientWeight = "71.5"
    ds.PatientAddress = "1 Elm Street"
    ds.OtherPatientNames = "SMITH^JANE"
    ds.StudyDate = "20230125"
    ds.AcquisitionDateTime = "20230125084347.123456+0100"
    ds.StudyTime = "084347"
    ds.ClinicalTrialSubjectID = "SUBJ-1"  # D
    ds.ClinicalTrialProtocolName = "TRIAL X"  # Z
    ds.VerifyingObserverName = "WHO^EVER"  # D, PN
    ds.ProtocolName = "Dr Who protocol"  # X/D
    ds.RequestedProcedureDescription = "CT for Jane"  # X/Z
    ds.AdditionalPatientHistory = "lives with her sister Ann"
    ds.ImageComments = "patient Jane Doe"
    ds.DerivationDescription = "by Jane"
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.SOPClassUID = CT_STORAGE
    ds.StudyInstanceUID = "1.2.3.4.5"
    ds.DeviceUID = "1.2.3.99"  # U
    ds.IrradiationEventUID = ["1.2.3.100", "1.2.3.101"]  # U, VM 2
    ds.Manufacturer = "ACME"  # unlisted: kept
    ds.BodyPartExamined = "CHEST"
    ds.add_new(0x00280301, "CS", "NO")  # BurnedInAnnotation
    # unlisted person name, free text and unparsable value
    ds.add_new(0x00400006, "PN", "SCHED^DOC")  # listed X anyway
    ds.add_new(0x00321032, "PN", "REQ^DOC")  # RequestingPhysician X
    ds.add_new(0x00700084, "PN", "CREATOR^X")  # ContentCreatorName Z/D
    ds.add_new(0x300E0008, "PN", "REVIEWER^R")  # ReviewerName X/Z
    ds.add_new(0x0018A001, "SQ", Sequence())  # ContributingEquipmentSequence (unlisted)
    contrib = Dataset()
    contrib.add_new(0x00081010, "SH", "ROOM-7")  # StationName X/Z/D
    contrib.add_new(0x0018A002, "DT", "20230101120000")  # ContributionDateTime X
    contrib.add_new(0x00080070, "LO", "ACME")  # kept
    ds[0x0018A001].value.append(contrib)
    ds.add_new(0x00189999, "UN", b"hidden")  # no dictionary entry: UN
    ds.add_new(0x00204000, "LT", "comment")  # ImageComments overwritten
    ds.add_new(0x00181400, "LO", "processing")  # X/D
    ds.add_new(0x60000010, "US", 8)  # OverlayRows
    ds.add_new(0x60003000, "OW", b"\x00" * 8)  # OverlayData
    ds.add_new(0x60004000, "LT", "overlay says Jane")  # OverlayComments
    ds.add_new(0x50000005, "US", 1)  # a curve
    ds.IconImageSequence = Sequence([Dataset()])
    ds.IconImageSequence[0].Rows = 4
    ds.add_new(0xFFFAFFFA, "SQ", Sequence([Dataset()]))  # DigitalSignaturesSequence
    ds.OriginalAttributesSequence = Sequence([Dataset()])
    ds.RequestAttributesSequence = Sequence([Dataset()])
    ds.RequestAttributesSequence[0].RequestedProcedureID = "RP-1"
    ds.ContentSequence = Sequence([Dataset()])
    ds.ContentSequence[0].TextValue = "Jane Doe is well"
    ds.SourceImageSequence = Sequence([Dataset()])  # X/Z/U*
    ds.SourceImageSequence[0].ReferencedSOPClassUID = CT_STORAGE
    ds.SourceImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4.5.5"
    ds.ReferencedStudySequence = Sequence([Dataset()])  # X/Z
    ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID = "1.2.3.4.5"
    ds.add_new(0x00080000, "UL", 42)  # a group length (retired)
    return ds


def test_annex_e_actions_on_a_planted_dataset() -> None:
    ds, stats = deidentify_dicom(_planted(), KEY)
    shift = date_shift_days(KEY, "MRN-4242", 365)
    removed = [
        "PatientBirthTime",
        "PatientAge",
        "PatientWeight",
        "PatientAddress",
        "OtherPatientNames",
        "ProtocolName",
        "AdditionalPatientHistory",
        "ImageComments",
        "DerivationDescription",
        "ScheduledPerformingPhysicianName",
        "RequestingPhysician",
        "AcquisitionDeviceProcessingDescription",
        "IconImageSequence",
        "DigitalSignaturesSequence",
        "OriginalAttributesSequence",
        "RequestAttributesSequence",
        "ContentSequence",
    ]
    for keyword in removed:
        assert keyword not in ds, keyword
    for tag in (0x00189999, 0x60000010, 0x60003000, 0x60004000, 0x50000005, 0x00080000):
        assert tag not in ds, hex(tag)
    assert ds.ClinicalTrialSubjectID == "ANONYMIZED"  # D
    assert ds.VerifyingObserverName == "ANONYMIZED"  # D on a PN
    assert ds.ClinicalTrialProtocolName == ""  # Z
    assert ds.RequestedProcedureDescription == ""  # X/Z
    assert ds[0x00700084].value == "" and ds[0x300E0008].value == ""  # Z/D, X/Z
    assert ds.StudyDate == _shifted("20230125", shift)
    assert ds.AcquisitionDateTime == _shifted("20230125", shift) + "084347.123456"
    assert ds.StudyTime == "084347"
    assert ds.PatientBirthDate == ""
    assert ds.DeviceUID != "1.2.3.99" and _UID.match(ds.DeviceUID)
    assert len(ds.IrradiationEventUID) == 2 and all(_UID.match(u) for u in ds.IrradiationEventUID)
    assert ds.Manufacturer == "ACME" and ds.BodyPartExamined == "CHEST"
    item = ds[0x0018A001].value[0]  # an unlisted sequence: kept, items cleaned
    assert item.StationName == ""
    assert item.ContributionDateTime == _shifted("20230101", shift) + "120000"  # X, but shifted
    assert item.Manufacturer == "ACME"
    ref = ds.SourceImageSequence[0]
    assert ref.ReferencedSOPClassUID == CT_STORAGE and _UID.match(ref.ReferencedSOPInstanceUID)
    assert len(ds.ReferencedStudySequence) == 0  # X/Z -> an empty sequence
    assert stats.uids_remapped == 6  # SOP, study, device, 2 events, source image
    out = dicom_to_bytes(_with_meta(ds)).lower()
    for secret in (b"jane", b"doe", b"elm street", b"mrn-4242", b"hidden", b"room-7", b"1970"):
        assert secret not in out, secret


def _with_meta(ds: Dataset) -> Dataset:
    ds = copy.deepcopy(ds)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    return ds


def test_remove_mode_on_a_planted_dataset() -> None:
    ds, stats = deidentify_dicom(_planted(), KEY, REMOVE)
    assert ds.StudyDate == "" and ds.StudyTime == ""
    assert ds.AcquisitionDateTime == ""  # X/Z/D -> emptied
    assert "PatientBirthTime" not in ds and ds.PatientBirthDate == ""
    assert stats.dates_shifted == 0


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # pydicom, on planting them
def test_malformed_dates_are_removed_not_fatal() -> None:
    ds = _planted()
    ds.add_new(0x00080021, "DA", "2023-13-45")  # SeriesDate, invalid
    ds.add_new(0x00080022, "DA", "20230230")  # AcquisitionDate, no such day
    ds.add_new(0x00080031, "TM", "99:99")  # SeriesTime
    ds.add_new(0x00080023, "DA", "2023.01.25")  # ContentDate, legacy ACR-NEMA form
    ds.add_new(0x00181202, "DT", "2023")  # DateTimeOfLastCalibration: year only
    out, stats = deidentify_dicom(ds, KEY)
    shift = date_shift_days(KEY, "MRN-4242", 365)
    for keyword in ("SeriesDate", "AcquisitionDate", "SeriesTime", "DateTimeOfLastCalibration"):
        assert keyword not in out, keyword
    assert out.ContentDate == _shifted("20230125", shift)
    assert stats.dates_removed >= 4


def test_same_patient_same_shift_across_studies_and_links_across_files() -> None:
    first = _bundled("CT_small.dcm")
    second = _bundled("CT_small.dcm")  # another instance of the same series
    second.SOPInstanceUID = first.SOPInstanceUID + ".2"
    second.file_meta.MediaStorageSOPInstanceUID = second.SOPInstanceUID
    second.InstanceNumber = 2
    second.SourceImageSequence = Sequence([Dataset()])
    second.SourceImageSequence[0].ReferencedSOPClassUID = first.SOPClassUID
    second.SourceImageSequence[0].ReferencedSOPInstanceUID = first.SOPInstanceUID
    later = _bundled("CT_small.dcm")  # a later study of the same patient
    later.StudyInstanceUID = first.StudyInstanceUID + ".9"
    later.StudyDate = "20050601"
    other = _bundled("CT_small.dcm")  # another patient, same day
    other.PatientID = "SOMEONE-ELSE"
    a, _ = deidentify_dicom(first, KEY)
    b, _ = deidentify_dicom(second, KEY)
    c, _ = deidentify_dicom(later, KEY)
    d, _ = deidentify_dicom(other, KEY)
    assert a.SeriesInstanceUID == b.SeriesInstanceUID and a.StudyInstanceUID == b.StudyInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert b.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert b.file_meta.MediaStorageSOPInstanceUID == b.SOPInstanceUID
    assert c.StudyInstanceUID != a.StudyInstanceUID
    day = dt.timedelta(days=1)
    gap = dt.datetime.strptime(c.StudyDate, "%Y%m%d") - dt.datetime.strptime(a.StudyDate, "%Y%m%d")
    original_gap = dt.datetime(2005, 6, 1) - dt.datetime(2004, 1, 19)
    assert gap == original_gap and gap > day  # the interval between studies survives
    assert a.PatientID == c.PatientID != d.PatientID
    assert date_shift_days(KEY, "SOMEONE-ELSE", 365) != date_shift_days(KEY, "1CT1", 365)
    assert d.StudyDate != a.StudyDate  # same original day, another patient's shift


def test_max_date_shift_days_bounds_the_shift() -> None:
    original = _bundled("CT_small.dcm")
    ds, _ = deidentify_dicom(_bundled("CT_small.dcm"), KEY, DeidPolicy(max_date_shift_days=1))
    assert ds.StudyDate == _shifted(original.StudyDate, -1)


@pytest.mark.parametrize("keyword", ["BurnedInAnnotation", "RecognizableVisualFeatures"])
def test_burned_in_annotation_is_refused_unless_allowed(keyword: str) -> None:
    ds = _bundled("CT_small.dcm")
    setattr(ds, keyword, "YES")
    before = ds.PatientID
    with pytest.raises(BurnedInAnnotationError, match=keyword) as info:
        deidentify_dicom(ds, KEY)
    assert info.value.kind == "burned_in_annotation"
    assert isinstance(info.value, DeidError)
    assert ds.PatientID == before  # refused before anything changed
    out, _ = deidentify_dicom(ds, KEY, DeidPolicy(allow_burned_in=True))
    assert out[keyword].value == "YES" and out.PatientIdentityRemoved == "YES"


def test_policy_type_is_checked() -> None:
    with pytest.raises(DeidError, match="DeidPolicy"):
        deidentify_dicom(_bundled("CT_small.dcm"), KEY, "remove")  # type: ignore[arg-type]


def test_garbage_is_a_deid_error() -> None:
    with pytest.raises(DeidError, match="not a readable DICOM"):
        deidentify_dicom_bytes(b"\x00" * 64 + b"garbage", KEY)
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    with pytest.raises(DeidError, match="File Meta"):  # cut inside the file meta
        deidentify_dicom_bytes(Path(path).read_bytes()[:200], KEY)


def test_absurd_nesting_is_a_deid_error() -> None:
    ds = Dataset()
    inner = ds
    for _ in range(40):
        item = Dataset()
        inner.ReferencedImageSequence = Sequence([item])
        inner = item
    with pytest.raises(DeidError, match="nested deeper"):
        deidentify_dicom(ds, KEY)


@pytest.mark.filterwarnings("ignore")  # pydicom warns about each corrupt value it reads
def test_corrupted_files_raise_only_deid_errors() -> None:
    """Random byte damage to a real file: the result is de-identified bytes or
    a DeidError, never another exception."""
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    data = Path(path).read_bytes()
    rng = np.random.default_rng(7)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(120):
        damaged = bytearray(data)
        for pos in rng.integers(128, 3000, size=int(rng.integers(1, 20))):
            damaged[int(pos)] = int(rng.integers(0, 256))
        try:
            out = deidentify_dicom_bytes(bytes(damaged), KEY)
        except DeidError:
            outcomes["refused"] += 1
            continue
        outcomes["ok"] += 1
        assert b"1CT1" not in out  # the patient id never survives
    assert outcomes["ok"] > 0 and outcomes["refused"] > 0
