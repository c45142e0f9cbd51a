"""De-identify one DICOM dataset: profile ``medstream-basic-v1``.

A subset of the DICOM PS3.15 Annex E Basic Application Level Confidentiality
Profile, applied recursively through every sequence:

- identifying attributes are removed (``REMOVE``), or emptied where the IOD
  needs them present (``EMPTY``, Type 2); ``PatientName`` and ``PatientID``
  become a keyed pseudonym of the original patient id, so one patient's
  studies stay linkable under the same key;
- every element of VR PN (any person name) is removed, wherever it is;
- every date, date-time and time (VR DA, DT, TM) is emptied: this first
  version keeps no dates at all (date shifting is future work);
- every private element is removed;
- every instance UID (VR UI) is remapped with ``remap_uid`` (HMAC-SHA256), in
  the dataset and in the file meta, so references between files survive.
  Standard UIDs (root ``1.2.840.10008``: SOP classes, transfer syntaxes,
  coding schemes) are kept.
- ``PatientIdentityRemoved = YES`` and ``DeidentificationMethod`` are set.

Pixel data is not touched: burned-in annotations are a known gap.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError

from dataengine.deid.keys import DeidKey, pseudonym, remap_uid
from dataengine.deid.report import date_variants, name_variants
from dataengine.errors import DeidError

__all__ = [
    "DEID_METHOD",
    "PROFILE",
    "DicomDeidStats",
    "deidentify_dicom",
    "deidentify_dicom_bytes",
    "dicom_known_phi",
    "dicom_to_bytes",
]

PROFILE = "medstream-basic-v1"
# LO: at most 64 characters
DEID_METHOD = f"{PROFILE}: PS3.15 Basic Profile subset"

# Removed wherever they occur (Basic Profile actions X / X-or-Z / X-or-D).
REMOVE: frozenset[str] = frozenset(
    {
        "PatientBirthTime",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientTelecomInformation",
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "OtherPatientNames",
        "PatientMotherBirthName",
        "PatientBirthName",
        "MilitaryRank",
        "BranchOfService",
        "MedicalRecordLocator",
        "PatientInsurancePlanCodeSequence",
        "PatientPrimaryLanguageCodeSequence",
        "CountryOfResidence",
        "RegionOfResidence",
        "EthnicGroup",
        "Occupation",
        "PatientReligiousPreference",
        "AdditionalPatientHistory",
        "PatientComments",
        "MedicalAlerts",
        "Allergies",
        "PregnancyStatus",
        "LastMenstrualDate",
        "SmokingStatus",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionCodeSequence",
        "InstitutionalDepartmentName",
        "InstitutionalDepartmentTypeCodeSequence",
        "ReferringPhysicianAddress",
        "ReferringPhysicianTelephoneNumbers",
        "ReferringPhysicianIdentificationSequence",
        "PhysiciansOfRecordIdentificationSequence",
        "PerformingPhysicianIdentificationSequence",
        "PhysiciansReadingStudyIdentificationSequence",
        "OperatorIdentificationSequence",
        "RequestingService",
        "DeviceSerialNumber",
        "StationName",
        "DetectorID",
        "PlateID",
        "GantryID",
        "CassetteID",
        "StudyDescription",
        "SeriesDescription",
        "ImageComments",
        "StudyComments",
        "AdmissionID",
        "IssuerOfAdmissionID",
        "IssuerOfPatientID",
        "AdmittingDiagnosesDescription",
        "RequestAttributesSequence",
        "RequestedProcedureDescription",
        "RequestedProcedureID",
        "ScheduledProcedureStepDescription",
        "ScheduledProcedureStepID",
        "PerformedProcedureStepDescription",
        "PerformedProcedureStepID",
        "PerformedLocation",
        "PerformedStationName",
        "PerformedStationAETitle",
        "ScheduledStationAETitle",
        "ScheduledStationName",
        "ReferencedPatientSequence",
        "ReferencedStudySequence",
        "ReferencedPerformedProcedureStepSequence",
        "ProtocolName",
        "ContentSequence",
        "DerivationDescription",
        "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequest",
        "OrderEntererLocation",
        "TextComments",
        "TextString",
        "PersonAddress",
        "PersonTelephoneNumbers",
        "SourceApplicationEntityTitle",
    }
)

# Emptied (kept present with no value): Type 2 attributes of common IODs.
EMPTY: frozenset[str] = frozenset({"AccessionNumber", "StudyID", "PatientAge"})

# Replaced by the keyed patient pseudonym (Type 2, but useful for linkage).
PSEUDONYMIZED: frozenset[str] = frozenset({"PatientName", "PatientID"})

# UI attributes that name a class or an encoding, never an instance.
_CLASS_UID_KEYWORDS: frozenset[str] = frozenset(
    {
        "SOPClassUID",
        "MediaStorageSOPClassUID",
        "ReferencedSOPClassUID",
        "ReferencedSOPClassUIDInFile",
        "AffectedSOPClassUID",
        "RequestedSOPClassUID",
        "TransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "ImplementationClassUID",
        "CodingSchemeUID",
        "ContextGroupExtensionCreatorUID",
        "PrivateInformationCreatorUID",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "SOPClassesInStudy",
    }
)
_STANDARD_UID_ROOT = "1.2.840.10008."
_DATE_VRS = frozenset({"DA", "DT", "TM"})


@dataclass
class DicomDeidStats:
    """What ``deidentify_dicom`` changed in one dataset (element counts)."""

    removed: int = 0
    emptied: int = 0
    pseudonymized: int = 0
    person_names_removed: int = 0
    dates_emptied: int = 0
    private_tags_removed: int = 0
    uids_remapped: int = 0

    def add(self, other: DicomDeidStats) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _datasets(ds: Dataset) -> Iterator[Dataset]:
    """``ds`` and every dataset nested in its sequences, depth first."""
    yield ds
    for elem in list(ds):
        if elem.VR == "SQ" and elem.value is not None:
            for item in elem.value:
                yield from _datasets(item)


def _remap_value(key: DeidKey, value: object) -> tuple[object, int]:
    if isinstance(value, str):
        if not value or value.startswith(_STANDARD_UID_ROOT):
            return value, 0
        return remap_uid(key, value), 1
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        out: list[object] = []
        count = 0
        for v in value:
            new, n = _remap_value(key, v)
            out.append(new)
            count += n
        return out, count
    return value, 0


def _clean_level(ds: Dataset, key: DeidKey, patient_pseudonym: str, stats: DicomDeidStats) -> None:
    """De-identify the elements of one (possibly nested) dataset level."""
    for elem in list(ds):
        tag = elem.tag
        keyword = elem.keyword
        if tag.is_private:
            continue  # removed afterwards, counted there
        if keyword in PSEUDONYMIZED:
            ds[tag].value = patient_pseudonym
            stats.pseudonymized += 1
        elif keyword in REMOVE:
            del ds[tag]
            stats.removed += 1
        elif keyword in EMPTY:
            ds[tag].value = ""
            stats.emptied += 1
        elif elem.VR == "PN":
            del ds[tag]
            stats.person_names_removed += 1
        elif elem.VR in _DATE_VRS:
            if elem.value not in (None, ""):
                ds[tag].value = ""
                stats.dates_emptied += 1
        elif elem.VR == "UI" and keyword not in _CLASS_UID_KEYWORDS:
            new, n = _remap_value(key, elem.value)
            if n:
                ds[tag].value = new
                stats.uids_remapped += n


def _count_private(ds: Dataset) -> int:
    return sum(1 for level in _datasets(ds) for elem in level if elem.tag.is_private)


def deidentify_dicom(ds: Dataset, key: DeidKey) -> tuple[Dataset, DicomDeidStats]:
    """De-identify ``ds`` **in place** (see the module docstring) and return it
    with counts of what changed. Raises ``DeidError`` if it cannot be made safe.
    """
    stats = DicomDeidStats()
    original_id = str(ds.get("PatientID", "") or "")
    patient_pseudonym = pseudonym(key, "patient", original_id) if original_id else "ANONYMOUS"
    try:
        stats.private_tags_removed = _count_private(ds)
        ds.remove_private_tags()  # recursive in pydicom >= 2
        for level in list(_datasets(ds)):
            _clean_level(level, key, patient_pseudonym, stats)
        meta = getattr(ds, "file_meta", None)
        if isinstance(meta, FileMetaDataset):
            for elem in list(meta):
                if elem.keyword in REMOVE:
                    del meta[elem.tag]
                    stats.removed += 1
                elif elem.VR == "UI" and elem.keyword not in _CLASS_UID_KEYWORDS:
                    new, n = _remap_value(key, elem.value)
                    if n:
                        meta[elem.tag].value = new
                        stats.uids_remapped += n
        if _count_private(ds):
            raise DeidError("private elements survived removal")
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = DEID_METHOD
        ds.LongitudinalTemporalInformationModified = "REMOVED"
    except DeidError:
        raise
    except Exception as exc:  # pydicom raises many types on malformed values
        raise DeidError(f"cannot de-identify DICOM dataset: {exc}") from exc
    return ds, stats


def dicom_to_bytes(ds: Dataset) -> bytes:
    """Serialize ``ds`` as a Part-10 file (preamble, ``DICM``, file meta)."""
    buf = io.BytesIO()
    try:
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    except Exception as exc:
        raise DeidError(f"cannot write de-identified DICOM: {exc}") from exc
    return buf.getvalue()


def deidentify_dicom_bytes(data: bytes, key: DeidKey) -> bytes:
    """Part-10 bytes in, de-identified Part-10 bytes out."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
        raise DeidError(f"not a readable DICOM file: {exc}") from exc
    deidentify_dicom(ds, key)
    return dicom_to_bytes(ds)


_KNOWN_PHI_TYPES: dict[str, str] = {
    "PatientID": "MRN",
    "OtherPatientIDs": "MRN",
    "AccessionNumber": "ID",
    "StudyID": "ID",
    "InstitutionName": "ORG",
    "InstitutionalDepartmentName": "ORG",
    "InstitutionAddress": "ADDRESS",
    "PatientAddress": "ADDRESS",
    "PatientTelephoneNumbers": "PHONE",
    "StationName": "ID",
    "DeviceSerialNumber": "ID",
}
_KNOWN_PHI_DATES = ("PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate")


def dicom_known_phi(ds: Dataset) -> dict[str, str]:
    """PHI values in ``ds`` (before de-identification) as ``{value: type}``,
    for exact-match redaction of the same study's report: every person name
    in its usual written forms, ids, institution, phone, and dates in several
    formats."""
    found: dict[str, str] = {}
    for level in _datasets(ds):
        for elem in level:
            if elem.tag.is_private or elem.value in (None, ""):
                continue
            values = elem.value if elem.VM > 1 else [elem.value]
            if elem.VR == "PN":
                for v in values:
                    for variant in name_variants(str(v)):
                        found.setdefault(variant, "NAME")
            elif elem.keyword in _KNOWN_PHI_TYPES:
                for v in values:
                    found.setdefault(str(v).strip(), _KNOWN_PHI_TYPES[elem.keyword])
            elif elem.keyword in _KNOWN_PHI_DATES:
                for variant in date_variants(str(elem.value)):
                    found.setdefault(variant, "DATE")
    return {k: v for k, v in found.items() if k}
