"""De-identify a WFDB record by rewriting its ``.hea`` header: record and
signal file names become ``wave_NNNN``, the base date and time go, the
``#`` comments are replaced by one placeholder line; the signal files are
not touched, so the decoded signals are identical.

The rules, field by field: ``dataengine/deid/README.md``.
``wfdb_known_phi`` extracts the values the comments and the base date held,
for report redaction (the join).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from dataengine.deid.base import DeidStats, checked_policy
from dataengine.deid.keys import DeidKey
from dataengine.deid.policy import DeidPolicy
from dataengine.deid.report import date_variants, name_variants
from dataengine.errors import DecodeError, DeidError
from dataengine.formats.wfdb import WfdbHeader, parse_wfdb_header

__all__ = [
    "COMMENT_PLACEHOLDER",
    "WfdbDeidStats",
    "WfdbFiles",
    "deidentify_wfdb",
    "wfdb_known_phi",
]

COMMENT_PLACEHOLDER = "# de-identified: comments removed"

_RECORD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,8})$")
_LEADING_FIELD = re.compile(r"^(\s*)(\S+)")
# "Name: John Doe", "Patient name = DOE^JOHN", "MRN: 12345", "DOB: 1961-02-03"
_LABELLED = re.compile(
    r"(?i)\b(patient\s+name|name|mrn|medical\s+record(?:\s+number)?|patient\s+id|id|"
    r"dob|date\s+of\s+birth|birth\s*date|date)\s*[:=]\s*"
    r"([^:=,;]+?)\s*(?=$|[,;]|\s+[A-Za-z][A-Za-z ]{0,20}\s*[:=])"
)
_KIND = {
    "name": "NAME",
    "patient name": "NAME",
    "mrn": "MRN",
    "medical record": "MRN",
    "medical record number": "MRN",
    "patient id": "ID",
    "id": "ID",
    "dob": "DATE",
    "date of birth": "DATE",
    "birth date": "DATE",
    "birthdate": "DATE",
    "date": "DATE",
}
_BASE_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")  # WFDB dd/mm/yyyy


@dataclass(frozen=True)
class WfdbFiles:
    """A WFDB record as stored: the ``.hea`` header and its signal files by
    the names the header uses (``EncodedFile.data`` and ``.companions``)."""

    header: bytes
    companions: Mapping[str, bytes]


@dataclass
class WfdbDeidStats(DeidStats):
    """What ``deidentify_wfdb`` changed: the header rewritten, comment lines
    removed, record-line fields removed (base time/date), signal files
    renamed."""

    COUNTERS: ClassVar[dict[str, str]] = {
        "headers_rewritten": "wfdb_headers_rewritten",
        "comments_removed": "wfdb_comments_removed",
    }

    headers_rewritten: int = 0
    comments_removed: int = 0
    fields_removed: int = 0
    files_renamed: int = 0


def deidentify_wfdb(
    record: WfdbFiles,
    key: DeidKey,
    policy: DeidPolicy | None = None,
    *,
    record_name: str,
) -> tuple[WfdbFiles, WfdbDeidStats]:
    """De-identify a record (rules: ``deid/README.md``): the rewritten header
    (ASCII, ``\\n`` line ends) with its signal files under their new names,
    and what was changed.

    ``key`` and ``policy`` as every de-identifier takes them
    (``deid.base.checked_policy``); the base date is removed in either date
    mode. ``record.companions``: every signal file the header names must be
    present; others are dropped. ``record_name``: the new record name, a
    plain file name such as ``wave_0000``. Raises ``DeidError`` when the
    header cannot be parsed or a signal file it names is missing.
    """
    checked_policy(key, policy)
    if not _RECORD_NAME.match(record_name):
        raise ValueError(f"record_name must be a plain file name, got {record_name!r}")
    try:
        parsed = parse_wfdb_header(record.header)
    except DecodeError as exc:
        raise DeidError(f"cannot de-identify WFDB header: {exc}") from exc
    renames = _renames(parsed, record_name)
    missing = [name for name in renames if name not in record.companions]
    if missing:
        raise DeidError(
            f"WFDB header references signal file {missing[0]!r}, which is not in the study"
        )
    lines: list[str] = []
    fields_removed = 0
    for i, line in enumerate(parsed.lines):
        if i == parsed.record_line:
            fields = line.split()
            fields_removed = max(0, len(fields) - 4)
            lines.append(" ".join([record_name, *fields[1:4]]))
        elif i in parsed.signal_lines:
            lines.append(_LEADING_FIELD.sub(lambda m: m.group(1) + renames[m.group(2)], line, 1))
    if parsed.comment_lines:
        lines.append(COMMENT_PLACEHOLDER)
    text = "\n".join(lines) + "\n"
    files = {renames[old]: record.companions[old] for old in renames}
    stats = WfdbDeidStats(
        headers_rewritten=1,
        comments_removed=len(parsed.comment_lines),
        fields_removed=fields_removed,
        files_renamed=len(renames),
    )
    return WfdbFiles(text.encode("ascii"), files), stats


def wfdb_known_phi(header: bytes) -> dict[str, str]:
    """PHI values in a WFDB header as ``{value: type}`` for report redaction:
    labelled values in the comments (``Name:`` -> ``NAME`` in its written
    forms, ``MRN:`` -> ``MRN``, ``ID:`` -> ``ID``, ``DOB:``/``Date:`` ->
    ``DATE`` in several formats) and the record line's base date. An
    unparseable header gives ``{}`` (it will not be packed anyway)."""
    try:
        parsed = parse_wfdb_header(header)
    except DecodeError:
        return {}
    found: dict[str, str] = {}
    for comment in parsed.comments():
        for match in _LABELLED.finditer(comment):
            kind = _KIND.get(re.sub(r"\s+", " ", match.group(1).lower()), "PHI")
            value = match.group(2).strip()
            if not value:
                continue
            if kind == "NAME":
                variants = name_variants(value)
            elif kind == "DATE":
                variants = date_variants(value)
            else:
                variants = [value]
            for v in variants:
                found.setdefault(v, kind)
    record = parsed.lines[parsed.record_line].split()
    if len(record) >= 6:
        date = _BASE_DATE.match(record[5])
        if date:
            day, month, year = (int(g) for g in date.groups())
            for v in date_variants(f"{year:04d}-{month:02d}-{day:02d}"):
                found.setdefault(v, "DATE")
    return {k: v for k, v in found.items() if len(k) > 1}


def _renames(parsed: WfdbHeader, record_name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, old in enumerate(parsed.file_names):
        suffix = _SUFFIX.search(old)
        ext = suffix.group(1) if suffix and suffix.start() > 0 else ".dat"
        out[old] = f"{record_name}{ext}" if k == 0 else f"{record_name}_{k}{ext}"
    return out
