"""Check one stored DICOM header: de-identification invariants (PS3.15
Annex E markers, no private elements but the allowed ones, no person name but
the pseudonym, no birth date, every instance UID remapped) and a PHI scan of
every value, nested sequences and the file meta included."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from dataengine.deid.dicom import non_phi_kinds, private_tags_kept
from dataengine.deid.policy import PrivateTagRef, parse_private_tag
from dataengine.errors import ConfigError
from dataengine.formats.dicom import dicom_text, element_texts
from dataengine.verify._scan import Finding, PhiScanner, mask

__all__ = ["DeidRules", "check_dicom"]

# What de-identification writes into a PN element: the keyed patient
# pseudonym (16 hex digits, ``keys.pseudonym``), ``ANONYMOUS`` when there was
# no patient id, the Annex E dummy ``ANONYMIZED``, or nothing.
_PSEUDONYM = re.compile(r"[0-9a-f]{16}|ANONYMOUS|ANONYMIZED|")
_STANDARD_UID_ROOT = "1.2.840.10008."
_REMAPPED_UID_ROOT = "2.25."
# UIDs that name a class, an encoding or a scheme, never an instance.
_CLASS_UID = re.compile(r"Class|TransferSyntax|CodingScheme|CreatorUID")
_FREE_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "UR", "AE"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})
_DUMMY_DATES = frozenset({"", "19000101", "19000101000000", "000000"})
_SKIPPED_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"}
)


@dataclass(frozen=True)
class DeidRules:
    """What the pack's de-identification policy allows (from the manifest's
    ``pack.deid.policy``; a dataset without one gets the strict defaults)."""

    keep_private: frozenset[PrivateTagRef] = frozenset()
    allow_burned_in: bool = False

    @classmethod
    def from_pack(cls, pack: Mapping[str, Any]) -> DeidRules:
        deid = pack.get("deid", {}) if isinstance(pack, Mapping) else {}
        policy = deid.get("policy", {}) if isinstance(deid, Mapping) else {}
        if not isinstance(policy, Mapping):
            return cls()
        refs: set[PrivateTagRef] = set()
        for entry in policy.get("keep_private", ()) or ():
            try:
                refs.add(parse_private_tag(str(entry)))
            except ConfigError:
                continue  # an unparseable entry allows nothing
        return cls(frozenset(refs), policy.get("allow_burned_in") is True)


def _name(tag: BaseTag, keyword: str) -> str:
    return f"({tag.group:04X},{tag.element:04X}) {keyword or 'private'}".rstrip()


def _walk(ds: Dataset, prefix: str, depth: int = 0) -> Iterator[tuple[str, DataElement | None]]:
    """``(path, element)`` for every element at every nesting level; the
    element is ``None`` when pydicom cannot read its value."""
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
        except Exception:
            yield f"{prefix}({tag.group:04X},{tag.element:04X})", None
            continue
        path = f"{prefix}{_name(tag, elem.keyword)}"
        yield path, elem
        if elem.VR == "SQ" and elem.value and depth < 64:
            for i, item in enumerate(elem.value):
                yield from _walk(item, f"{path}[{i}] ", depth + 1)


def check_dicom(ds: Dataset, where: str, scanner: PhiScanner, rules: DeidRules) -> list[Finding]:
    """Invariant violations (kind ``dicom_deid``) and PHI findings in ``ds``."""
    out: list[Finding] = []

    def bad(path: str, what: str) -> None:
        out.append(Finding("dicom_deid", f"{where} {path}".strip(), what, ""))

    if dicom_text(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        bad("(0012,0062) PatientIdentityRemoved", "is not YES")
    temporal = dicom_text(ds.get("LongitudinalTemporalInformationModified", "")).upper()
    if temporal not in ("MODIFIED", "REMOVED"):
        bad(
            "(0028,0303) LongitudinalTemporalInformationModified",
            "is neither MODIFIED (dates shifted) nor REMOVED",
        )
    if not rules.allow_burned_in:
        for keyword in ("BurnedInAnnotation", "RecognizableVisualFeatures"):
            if dicom_text(ds.get(keyword, "")).upper() == "YES":
                bad(keyword, "is YES, and the pack policy does not allow burned-in text")

    levels: list[tuple[str, Dataset]] = [("", ds)]
    meta = getattr(ds, "file_meta", None)
    if isinstance(meta, Dataset):
        levels.append(("file meta ", meta))
    for prefix, top in levels:
        allowed: set[BaseTag] = set()
        for level in _levels(top):
            for tag in private_tags_kept(level, rules.keep_private):
                allowed.add(tag)
        for path, elem in _walk(top, prefix):
            if elem is None:
                bad(path, "value cannot be read, so it cannot be checked")
            elif elem.tag.is_private and elem.tag not in allowed:
                bad(path, "private element kept (not in the policy's keep_private)")
            else:
                out += _check_element(path, elem, where, scanner, temporal, bad)
    return out


def _levels(ds: Dataset, depth: int = 0) -> Iterator[Dataset]:
    yield ds
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
        except Exception:
            continue
        if elem.VR == "SQ" and elem.value and depth < 64:
            for item in elem.value:
                yield from _levels(item, depth + 1)


def _check_element(
    path: str,
    elem: DataElement,
    where: str,
    scanner: PhiScanner,
    temporal: str,
    bad: Callable[[str, str], None],
) -> list[Finding]:
    vr = elem.VR
    if vr == "SQ" or vr in _SKIPPED_VRS:
        return []
    values = element_texts(elem)
    loc = f"{where} {path}".strip()
    out: list[Finding] = []
    if vr == "PN":
        for v in values:
            if not _PSEUDONYM.fullmatch(v):
                bad(path, f"person name {mask(v)} is not a pseudonym")
    elif vr in _DATE_VRS:
        if elem.keyword == "PatientBirthDate" and values:
            bad(path, "birth date kept")
        elif temporal == "REMOVED" and vr != "TM" and any(v not in _DUMMY_DATES for v in values):
            bad(path, "date kept although LongitudinalTemporalInformationModified is REMOVED")
    elif vr == "UI" and not _CLASS_UID.search(elem.keyword or ""):
        for v in values:
            if v and not v.startswith((_STANDARD_UID_ROOT, _REMAPPED_UID_ROOT)):
                bad(path, f"instance UID {mask(v)} was not remapped")
    elif vr == "UN":
        bad(path, "element of unknown VR kept (its value cannot be checked)")
    # free text also gets the patterns; codes, numbers, UIDs and names only
    # the known values (a pattern would misread "1.2.840..." or "0.5\\0.5").
    # A kind the profile says is not PHI in this attribute (a software
    # version's build date) is skipped, as de-identification keeps it.
    patterns = vr in _FREE_TEXT_VRS and not elem.tag.is_private
    skip = non_phi_kinds(elem.tag)
    for v in values:
        out += scanner.scan(v, loc, patterns=patterns, date_field=vr in _DATE_VRS, skip_kinds=skip)
    return out
