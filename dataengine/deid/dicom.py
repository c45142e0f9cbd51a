"""De-identify one DICOM dataset: profile ``medstream-ps315-annexE-v2``,
PS3.15 Annex E Basic Profile (``113100``) with keyed date shifting
(``113107``) and the safe private option (``113111``), recursively through
every sequence and the file meta.

The rules, in the order they apply (burned-in text, private elements,
Table E.1-1 actions, dates, unlisted elements, UIDs, markers):
``dataengine/deid/README.md``. Table E.1-1 is data in ``annex_e.py``.
"""

from __future__ import annotations

import datetime as _dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from dataengine.deid.annex_e import (
    BASIC_PROFILE,
    MEDSTREAM_EXTRA,
    VERSION_ATTRIBUTES,
    repeating_action,
    resolve,
)
from dataengine.deid.base import DeidStats, checked_policy
from dataengine.deid.keys import DeidKey, date_shift_days, pseudonym, remap_uid
from dataengine.deid.policy import DeidPolicy, PrivateTagRef
from dataengine.deid.report import date_variants, name_variants
from dataengine.errors import BurnedInAnnotationError, DeidError
from dataengine.formats.dicom import dicom_text, element_texts, element_values

__all__ = [
    "DEID_METHOD",
    "PROFILE",
    "DicomDeidStats",
    "deidentify_dicom",
    "deidentify_dicom_bytes",
    "dicom_known_phi",
    "dicom_patient_id",
    "dicom_to_bytes",
    "non_phi_kinds",
    "private_tags_kept",
]

PROFILE = "medstream-ps315-annexE-v2"
# LO: at most 64 characters; the date mode is appended.
DEID_METHOD = f"{PROFILE}: Basic Profile"

# (code value, code meaning), coding scheme DCM (PS3.16 CID 7050)
CODE_BASIC = ("113100", "Basic Application Confidentiality Profile")
CODE_MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
CODE_SAFE_PRIVATE = ("113111", "Retain Safe Private Option")

DUMMY_TEXT = "ANONYMIZED"
_DUMMY_DATES = {"DA": "19000101", "DT": "19000101000000", "TM": "000000"}
_DUMMY_NUMBERS = {"IS": "0", "DS": "0", "AS": "000Y"}
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
_FREE_TEXT_VRS = frozenset({"LT", "ST", "UT"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})
_MAX_DEPTH = 32  # sequence nesting; deeper is refused, not recursed into

_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
_BIRTH_DATE = 0x00100030
_BIRTH_TIME = 0x00100032
_CONTENT_SEQUENCE = 0x0040A730

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
        "MappingResourceUID",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "SOPClassesInStudy",
    }
)
_STANDARD_UID_ROOT = "1.2.840.10008."

_DA = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_DT = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?([+-]\d{4})?$")
_TM = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.\d{1,6})?)?)?$")


@dataclass
class DicomDeidStats(DeidStats):
    """What ``deidentify_dicom`` changed in one dataset (element counts;
    ``uids_remapped`` counts values). Each changed element is counted once."""

    COUNTERS: ClassVar[dict[str, str]] = {
        "removed": "dicom_elements_removed",
        "emptied": "dicom_elements_emptied",
        "replaced": "dicom_elements_replaced",
        "uids_remapped": "uids_remapped",
        "dates_shifted": "dates_shifted",
        "dates_removed": "dates_removed",
        "private_tags_removed": "private_tags_removed",
        "private_tags_kept": "private_tags_kept",
    }

    removed: int = 0  # X, and the unlisted PN / free text / UN rule
    emptied: int = 0  # Z
    replaced: int = 0  # D dummies and the patient pseudonym
    uids_remapped: int = 0
    dates_shifted: int = 0
    dates_removed: int = 0  # emptied, removed or dummied dates/times
    private_tags_removed: int = 0
    private_tags_kept: int = 0


@dataclass
class _Context:
    key: DeidKey
    policy: DeidPolicy
    keep_private: frozenset[PrivateTagRef]
    shift_days: int | None  # None: remove mode
    patient_pseudonym: str
    stats: DicomDeidStats


def _datasets(ds: Dataset) -> Iterator[Dataset]:
    """``ds`` and every dataset nested in its sequences, depth first."""
    yield ds
    for elem in list(ds):
        if elem.VR == "SQ" and elem.value is not None:
            for item in elem.value:
                yield from _datasets(item)


def dicom_patient_id(ds: Dataset) -> str:
    """The original ``PatientID`` of ``ds`` (stripped; ``""`` when absent),
    the identity ``date_shift_days`` and the pseudonym are keyed on."""
    try:
        return dicom_text(ds.get("PatientID", ""))
    except Exception:
        return ""


def _is_yes(ds: Dataset, keyword: str) -> bool:
    try:
        return dicom_text(ds.get(keyword, "")).upper() == "YES"
    except Exception:
        return False


def _check_burned_in(ds: Dataset, policy: DeidPolicy) -> None:
    if policy.allow_burned_in:
        return
    for keyword in ("BurnedInAnnotation", "RecognizableVisualFeatures"):
        if _is_yes(ds, keyword):
            raise BurnedInAnnotationError(
                f"{keyword} is YES: the pixels may show identifying text or features, "
                "which header de-identification cannot remove (refused; the policy's "
                "allow_burned_in packs such images anyway)"
            )


def _set(ds: Dataset, tag: BaseTag, values: list[object]) -> None:
    ds[tag].value = values[0] if len(values) == 1 else values


# -- dates ------------------------------------------------------------------


def _shift_da(value: str, days: int) -> str | None:
    m = _DA.match(value)
    if m is None:
        return None
    try:
        day = _dt.date(int(m[1]), int(m[2]), int(m[3])) + _dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def _shift_dt(value: str, days: int) -> str | None:
    m = _DT.match(value)
    if m is None:
        return None
    date = _shift_da(f"{m[1]}{m[2]}{m[3]}", days)
    time = m[4] or ""
    if date is None or (time and _TM.match(time) is None) or not _valid_tm(time):
        return None
    return date + time  # the UTC offset (m[5]) is dropped


def _valid_tm(value: str) -> bool:
    if not value:
        return True
    m = _TM.match(value)
    if m is None:
        return False
    hh, mm, ss = int(m[1]), int(m[2] or 0), int(m[3] or 0)
    return hh < 24 and mm < 60 and ss < 61


def _clean_date(ds: Dataset, elem: DataElement, action: str | None, ctx: _Context) -> None:
    tag = elem.tag
    vr = elem.VR
    values = [v for v in element_texts(elem) if v]
    stats = ctx.stats
    if int(tag) == _BIRTH_TIME:
        del ds[tag]
        stats.dates_removed += 1
        return
    if int(tag) == _BIRTH_DATE:
        if values:
            ds[tag].value = ""
            stats.dates_removed += 1
        return
    if ctx.shift_days is not None:
        if not values:
            return
        if vr == "TM":
            if all(_valid_tm(v) for v in values):
                return
            del ds[tag]
            stats.dates_removed += 1
            return
        shift = _shift_da if vr == "DA" else _shift_dt
        shifted = [shift(v, ctx.shift_days) for v in values]
        if any(s is None for s in shifted):
            del ds[tag]
            stats.dates_removed += 1
            return
        _set(ds, tag, [s for s in shifted if s is not None])
        stats.dates_shifted += 1
        return
    op = resolve(action) if action is not None else "empty"
    if op == "remove":
        del ds[tag]
        stats.dates_removed += 1
    elif op == "dummy":
        ds[tag].value = _DUMMY_DATES[vr]
        stats.dates_removed += 1
    elif values:
        ds[tag].value = ""
        stats.dates_removed += 1


# -- one element ------------------------------------------------------------


def _remap_values(elem: DataElement, ctx: _Context) -> list[object] | None:
    """The element's UIDs remapped, or ``None`` when nothing changes."""
    out: list[object] = []
    count = 0
    for v in element_values(elem):
        uid = dicom_text(v)
        if uid and not uid.startswith(_STANDARD_UID_ROOT):
            out.append(remap_uid(ctx.key, uid))
            count += 1
        else:
            out.append(uid)
    if not count:
        return None
    ctx.stats.uids_remapped += count
    return out


def _remap(ds: Dataset, elem: DataElement, ctx: _Context) -> None:
    new = _remap_values(elem, ctx)
    if new is not None:
        _set(ds, elem.tag, new)


def _dummy(vr: str) -> object:
    if vr in _NUMERIC_VRS:
        return 0
    return _DUMMY_NUMBERS.get(vr, DUMMY_TEXT)


def _empty(ds: Dataset, elem: DataElement, ctx: _Context) -> None:
    if elem.VR == "SQ":
        if elem.value:
            ds[elem.tag].value = Sequence([])
            ctx.stats.emptied += 1
    elif element_values(elem):
        ds[elem.tag].value = None if elem.VR in _NUMERIC_VRS else ""
        ctx.stats.emptied += 1


def _clean_element(ds: Dataset, elem: DataElement, ctx: _Context, depth: int) -> None:
    tag = elem.tag
    t = int(tag)
    vr = elem.VR
    stats = ctx.stats
    if elem.tag.element == 0 and elem.tag.group != 0x0002:  # group length
        del ds[tag]
        stats.removed += 1
        return
    if t in (_PATIENT_NAME, _PATIENT_ID):
        # the pseudonym of this level's PatientID (a nested item may name
        # another patient), else of the dataset's patient
        own = dicom_patient_id(ds) if depth else ""
        ds[tag].value = pseudonym(ctx.key, "patient", own) if own else ctx.patient_pseudonym
        stats.replaced += 1
        return
    entry = BASIC_PROFILE.get(t) or MEDSTREAM_EXTRA.get(t) or VERSION_ATTRIBUTES.get(t)
    action = entry[1] if entry is not None else repeating_action(t)
    if vr in _DATE_VRS:
        if action is not None and repeating_action(t) is not None:
            del ds[tag]  # overlay/curve dates go with their group
            stats.removed += 1
        else:
            _clean_date(ds, elem, action, ctx)
        return
    if action is None:
        if vr == "PN" or vr == "UN" or vr in _FREE_TEXT_VRS or not elem.keyword:
            del ds[tag]
            stats.removed += 1
        elif vr == "UI" and elem.keyword not in _CLASS_UID_KEYWORDS:
            _remap(ds, elem, ctx)
        elif vr == "SQ":
            _clean_items(elem, ctx, depth)
        return
    op = "remove" if t == _CONTENT_SEQUENCE else resolve(action)
    if op == "remove":
        del ds[tag]
        stats.removed += 1
    elif op == "empty":
        _empty(ds, elem, ctx)
    elif vr == "SQ":  # dummy, recurse, keep, remap: keep the items, cleaned
        _clean_items(elem, ctx, depth)
    elif vr == "UI":
        _remap(ds, elem, ctx)
    elif op == "keep" and vr != "UN":  # UN: a value we cannot parse, removed below
        return
    elif vr in _BINARY_VRS or op == "remap":  # no dummy stands in for a document
        del ds[tag]
        stats.removed += 1
    else:  # dummy
        values = element_values(elem)
        ds[tag].value = _dummy(vr)
        if values:
            stats.replaced += 1


def _clean_items(elem: DataElement, ctx: _Context, depth: int) -> None:
    for item in elem.value or ():
        _clean_dataset(item, ctx, depth + 1)


_NO_KINDS: frozenset[str] = frozenset()
_DATES_NOT_PHI = frozenset({"DATE"})


def non_phi_kinds(tag: int) -> frozenset[str]:
    """PHI pattern kinds (``deid.report`` span kinds) whose matches in the
    value of a kept ``tag`` are not PHI by this profile: ``DATE`` in the
    software version attributes (``annex_e.VERSION_ATTRIBUTES``: a release or
    build date of the software), nothing elsewhere. De-identification keeps
    those attributes and ``verify`` skips those kinds there, through this one
    function; known values are always searched."""
    return _DATES_NOT_PHI if int(tag) in VERSION_ATTRIBUTES else _NO_KINDS


# -- private elements ---------------------------------------------------------


def private_tags_kept(ds: Dataset, refs: frozenset[PrivateTagRef]) -> set[BaseTag]:
    """Tags at this level of ``ds`` that the allow-list ``refs`` keeps, with
    their private creator elements (the de-identifier and ``verify`` agree
    through this one function)."""
    kept: set[BaseTag] = set()
    if not refs:
        return kept
    for tag in list(ds.keys()):
        if not tag.is_private or tag.element < 0x1000:
            continue
        creator_tag = Tag(tag.group, tag.element >> 8)
        if creator_tag not in ds:
            continue
        creator = dicom_text(ds[creator_tag].value)
        if PrivateTagRef(tag.group, creator, tag.element & 0xFF) in refs:
            kept.add(tag)
            kept.add(creator_tag)
    return kept


def _clean_private(ds: Dataset, ctx: _Context, depth: int) -> None:
    kept = private_tags_kept(ds, ctx.keep_private)
    for tag in [t for t in list(ds.keys()) if t.is_private]:
        if tag in kept:
            if tag.element >= 0x1000:
                ctx.stats.private_tags_kept += 1
                elem = ds[tag]
                if elem.VR == "SQ":
                    _clean_items(elem, ctx, depth)
            continue
        del ds[tag]
        ctx.stats.private_tags_removed += 1


# -- datasets -----------------------------------------------------------------


def _clean_dataset(ds: Dataset, ctx: _Context, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise DeidError(f"sequences nested deeper than {_MAX_DEPTH} levels")
    _clean_private(ds, ctx, depth)
    for tag in list(ds.keys()):
        if tag.is_private:
            continue
        try:
            elem = ds[tag]
        except Exception:  # pydicom cannot parse the raw value: unverifiable
            del ds[tag]
            ctx.stats.removed += 1
            continue
        _clean_element(ds, elem, ctx, depth)


def _clean_meta(meta: FileMetaDataset, ctx: _Context) -> None:
    for tag in list(meta.keys()):
        elem = meta[tag]
        entry = MEDSTREAM_EXTRA.get(int(tag)) or BASIC_PROFILE.get(int(tag))
        if tag.is_private or (entry is not None and entry[1] == "X"):
            del meta[tag]
            ctx.stats.removed += 1
        elif elem.VR == "UI" and elem.keyword not in _CLASS_UID_KEYWORDS:
            _remap(meta, elem, ctx)


def _check_private(ds: Dataset, refs: frozenset[PrivateTagRef]) -> None:
    for level in _datasets(ds):
        kept = private_tags_kept(level, refs)
        for tag in list(level.keys()):
            if tag.is_private and tag not in kept:
                raise DeidError(f"private element {tag} survived removal")


_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)
# Control characters no text value holds (tab, LF, FF, CR and ESC for ISO 2022
# character sets are allowed).
_BINARY_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")


def _check_text(ds: Dataset, where: str) -> None:
    """Refuse a kept text value holding binary bytes: a corrupt length made
    it swallow the elements after it, identifying ones included, which no
    rule above ever saw."""
    for level in _datasets(ds):
        for tag in list(level.keys()):
            elem = level[tag]
            if elem.VR not in _STRING_VRS:
                continue
            for text in element_texts(elem):
                if _BINARY_IN_TEXT.search(text):
                    raise DeidError(
                        f"{where}element {tag} {elem.keyword or 'private'} ({elem.VR}) holds "
                        "binary bytes: the file is corrupt (a wrong value length made it "
                        "swallow the elements after it)"
                    )


def _mark(ds: Dataset, ctx: _Context) -> None:
    shifting = ctx.shift_days is not None
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"{DEID_METHOD}, dates {'shifted' if shifting else 'removed'}"
    codes = [CODE_BASIC]
    if shifting:
        codes.append(CODE_MODIFIED_DATES)
    if ctx.keep_private:
        codes.append(CODE_SAFE_PRIVATE)
    seq = ds.get("DeidentificationMethodCodeSequence")
    items = list(seq.value) if seq is not None and seq.value else []
    present = {dicom_text(item.get("CodeValue", "")) for item in items}
    for value, meaning in codes:
        if value in present:
            continue
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if shifting else "REMOVED"


def deidentify_dicom(
    ds: Dataset, key: DeidKey, policy: DeidPolicy | None = None
) -> tuple[Dataset, DicomDeidStats]:
    """De-identify ``ds`` **in place** (rules: ``deid/README.md``) and return
    it with counts of what changed. ``key`` and ``policy`` as every
    de-identifier takes them (``deid.base.checked_policy``).

    Raises ``BurnedInAnnotationError`` for an image that declares burned-in
    text (unless ``policy.allow_burned_in``), and ``DeidError`` for anything
    that cannot be made safe (malformed beyond reading, private elements that
    will not go, sequences nested absurdly deep).
    """
    policy = checked_policy(key, policy)
    _check_burned_in(ds, policy)
    original_id = dicom_patient_id(ds)
    ctx = _Context(
        key=key,
        policy=policy,
        keep_private=policy.private_refs,
        shift_days=(
            date_shift_days(key, original_id, policy.max_date_shift_days)
            if policy.date_mode == "shift"
            else None
        ),
        patient_pseudonym=pseudonym(key, "patient", original_id) if original_id else "ANONYMOUS",
        stats=DicomDeidStats(),
    )
    try:
        _clean_dataset(ds, ctx, 0)
        meta = getattr(ds, "file_meta", None)
        if isinstance(meta, FileMetaDataset):
            _clean_meta(meta, ctx)
        _check_private(ds, ctx.keep_private)
        _check_text(ds, "")
        if isinstance(meta, FileMetaDataset):
            _check_text(meta, "file meta ")
        _mark(ds, ctx)
    except DeidError:
        raise
    except Exception as exc:  # pydicom raises many types on malformed values
        raise DeidError(f"cannot de-identify DICOM dataset: {type(exc).__name__}: {exc}") from exc
    return ds, ctx.stats


def dicom_to_bytes(ds: Dataset) -> bytes:
    """Serialize ``ds`` as a Part-10 file (preamble, ``DICM``, file meta)."""
    buf = io.BytesIO()
    try:
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    except Exception as exc:
        raise DeidError(f"cannot write de-identified DICOM: {exc}") from exc
    return buf.getvalue()


def deidentify_dicom_bytes(data: bytes, key: DeidKey, policy: DeidPolicy | None = None) -> bytes:
    """Part-10 bytes in, de-identified Part-10 bytes out."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises many types on malformed files
        raise DeidError(f"not a readable DICOM file: {type(exc).__name__}: {exc}") from exc
    deidentify_dicom(ds, key, policy)
    return dicom_to_bytes(ds)


_KNOWN_PHI_TYPES: dict[str, str] = {
    "PatientID": "MRN",
    "OtherPatientIDs": "MRN",
    "MedicalRecordLocator": "MRN",
    "AccessionNumber": "ID",
    "StudyID": "ID",
    "AdmissionID": "ID",
    "ServiceEpisodeID": "ID",
    "RequestedProcedureID": "ID",
    "ScheduledProcedureStepID": "ID",
    "PerformedProcedureStepID": "ID",
    "PlacerOrderNumberImagingServiceRequest": "ID",
    "FillerOrderNumberImagingServiceRequest": "ID",
    "ClinicalTrialSubjectID": "ID",
    "ClinicalTrialSubjectReadingID": "ID",
    "InsurancePlanIdentification": "ID",
    "StationName": "ID",
    "DeviceSerialNumber": "ID",
    "DetectorID": "ID",
    "PlateID": "ID",
    "CassetteID": "ID",
    "GantryID": "ID",
    "GeneratorID": "ID",
    "IssuerOfPatientID": "ORG",
    "InstitutionName": "ORG",
    "InstitutionalDepartmentName": "ORG",
    "ResponsibleOrganization": "ORG",
    "ClinicalTrialSponsorName": "ORG",
    "ClinicalTrialSiteName": "ORG",
    "InstitutionAddress": "ADDRESS",
    "PatientAddress": "ADDRESS",
    "ReferringPhysicianAddress": "ADDRESS",
    "PersonAddress": "ADDRESS",
    "RegionOfResidence": "ADDRESS",
    "PatientTelephoneNumbers": "PHONE",
    "PatientTelecomInformation": "PHONE",
    "ReferringPhysicianTelephoneNumbers": "PHONE",
    "PersonTelephoneNumbers": "PHONE",
    "PersonTelecomInformation": "PHONE",
    "OrderCallbackPhoneNumber": "PHONE",
}
_KNOWN_PHI_DATES = frozenset(
    {
        "PatientBirthDate",
        "StudyDate",
        "SeriesDate",
        "AcquisitionDate",
        "ContentDate",
        "InstanceCreationDate",
        "AdmittingDate",
        "DischargeDate",
        "LastMenstrualDate",
    }
)


def dicom_known_phi(ds: Dataset) -> dict[str, str]:
    """PHI values in ``ds`` (before de-identification) as ``{value: type}``,
    for exact-match redaction of the same study's report: every person name
    in its usual written forms, ids (``MRN``, ``ID``), organisations
    (``ORG``), addresses, phones, and patient/study dates in several
    formats (``DATE``), from every nesting level. Never raises: unreadable
    elements are skipped."""
    found: dict[str, str] = {}
    for level in _datasets(ds):
        for tag in list(level.keys()):
            try:
                elem = level[tag]
                if tag.is_private or elem.value in (None, ""):
                    continue
                values = element_values(elem)
            except Exception:
                continue
            if elem.VR == "PN":
                for v in values:
                    for variant in name_variants(str(v)):
                        found.setdefault(variant, "NAME")
            elif elem.keyword in _KNOWN_PHI_TYPES:
                for v in values:
                    for line in dicom_text(v).splitlines():
                        found.setdefault(line.strip(), _KNOWN_PHI_TYPES[elem.keyword])
            elif elem.keyword in _KNOWN_PHI_DATES:
                for v in values:
                    for variant in date_variants(dicom_text(v)):
                        found.setdefault(variant, "DATE")
    return {k: v for k, v in found.items() if k}
