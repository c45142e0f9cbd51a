"""Redact PHI from free-text reports.

Two passes, both replacing a span by a typed placeholder such as ``[NAME]``:

1. **Known values** from the same study's headers (the join: DICOM patient
   name, id, accession number, birth date; EDF patient fields), matched
   case-insensitively on word boundaries, longest first. This catches what no
   pattern can (a bare surname in running text).
2. **Patterns**: e-mail addresses, medical record numbers, labelled ids,
   dates, phone numbers (US, international, 11-digit CN mobile), titled names
   (``Mr./Mrs./Ms./Dr./Prof.`` + 1-3 capitalised words) and labelled names
   (``Patient:`` / ``Name:`` + words). Labels and titles are kept, so the
   text stays readable: ``Dr. [NAME]``, ``MRN: [MRN]``.

Known gaps (first version): names without a title or label that are not in
the headers, street addresses, ages over 89, free-text ids without a label.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "PLACEHOLDER_TYPES",
    "date_variants",
    "name_variants",
    "redact_report",
]

PLACEHOLDER_TYPES = ("NAME", "MRN", "ID", "PHONE", "DATE", "EMAIL", "ORG", "ADDRESS", "PHI")

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTH_RE = (
    r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
# A capitalised name word: Jane, O'Brien, McDonald, Smith-Jones.
_NAME_WORD = r"[A-Z](?:[a-z]+|'[A-Z][a-z]+)(?:[A-Z][a-z]+)?(?:-[A-Z][a-z]+)?"
# After an explicit label, all-caps names (DOE, JANE) count too, but not the
# next label on the same line.
_LABEL_STOP = r"(?!(?:MRN|DOB|ID|Age|Sex|Tel|Phone|Date|Acc)\b)"
_LABELLED_WORD = _LABEL_STOP + r"[A-Z][A-Za-z'\-]*[A-Za-z]"

_Rule = tuple[str, re.Pattern[str], int]  # (type, pattern, group to replace)

_RULES: tuple[_Rule, ...] = (
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b"), 0),
    (
        "MRN",
        re.compile(
            r"(?i:\b(?:MRN|M\.R\.N\.?|medical\s+record(?:\s+(?:number|no\.?|num\.?))?))"
            r"\s*(?:[:#]\s*|(?i:no\.?|number)\s*)?#?\s*"
            r"([A-Z]{0,3}\d[\d\-]{2,15}\d)\b"
        ),
        1,
    ),
    ("ID", re.compile(r"(?<![\d\-])\d{3}-\d{2}-\d{4}(?![\d\-])"), 0),  # SSN-like
    (
        "ID",
        re.compile(
            r"(?i:\b(?:accession(?:\s+(?:number|no\.?|#))?|acc\.?\s*(?:no\.?|#)|"
            r"patient\s+id|ssn|encounter(?:\s+(?:id|number))?|visit\s+(?:id|number)|"
            r"id(?:\s+(?:number|no\.?))?))"
            r"\s*[:#]\s*([A-Za-z0-9][A-Za-z0-9\-/.]{2,}[A-Za-z0-9])\b"
        ),
        1,
    ),
    (
        "DATE",
        re.compile(
            r"\b(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"
            r"|\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})"
            r"|(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
            rf"|\d{{1,2}}-{_MONTH_RE}-\d{{2,4}}"
            rf"|{_MONTH_RE}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
            rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH_RE}\.?,?\s+\d{{4}}"
            rf"|{_MONTH_RE}\.?\s+\d{{4}})\b"
        ),
        0,
    ),
    (
        "PHONE",
        re.compile(
            r"(?<![\w+])(?:\+?86[\s\-]?)?1[3-9]\d{9}(?!\d)"  # CN mobile
            r"|(?<![\w+])(?:\+?1[\s.\-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}(?!\d)"
            r"|(?<![\w+])\+\d{1,3}(?:[\s.\-]?\(?\d{1,4}\)?){2,5}(?!\d)"  # international
        ),
        0,
    ),
    (
        "NAME",
        re.compile(
            r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?\s+"
            rf"((?:{_NAME_WORD})(?:\s(?:[A-Z]\.\s?)?{_NAME_WORD}){{0,2}})"
        ),
        1,
    ),
    (
        "NAME",
        re.compile(
            r"(?i:\b(?:patient(?:\s+name)?|name|pt))\s*:[ \t]*"
            rf"({_LABELLED_WORD}(?:,?[ \t]{_LABELLED_WORD}){{0,2}})"
        ),
        1,
    ),
)


def _placeholder(kind: str) -> str:
    return f"[{kind}]"


def _normalize(value: str) -> str:
    return " ".join(value.split()).casefold()


def _known_pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    parts = []
    for value in sorted(set(values), key=lambda v: (-len(v), v)):
        words = value.split()
        parts.append(r"\s+".join(re.escape(w) for w in words))
    if not parts:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)", re.IGNORECASE)


def _usable_known(value: str) -> bool:
    """Skip values too short or too generic to redact on sight."""
    v = value.strip()
    if len(v) < 2:
        return False
    digits = sum(c.isdigit() for c in v)
    return not (digits == len(v) and len(v) < 4)


def redact_report(
    text: str, known_phi: Mapping[str, str] | Iterable[str] = ()
) -> tuple[str, Counter[str]]:
    """Return ``text`` with PHI replaced by typed placeholders, and the number
    of replacements per type (``NAME``, ``MRN``, ``ID``, ``PHONE``, ``DATE``,
    ``EMAIL``, and for known values also ``ORG``, ``ADDRESS``; untyped known
    values count as ``PHI``).

    ``known_phi`` maps exact values from the study's headers to their type
    (a plain iterable of values is typed ``PHI``); values shorter than two
    characters and numbers shorter than four digits are ignored.
    """
    if isinstance(known_phi, Mapping):
        typed = {str(k).strip(): str(v) for k, v in known_phi.items()}
    else:
        typed = {str(k).strip(): "PHI" for k in known_phi}
    typed = {k: v for k, v in typed.items() if _usable_known(k)}
    by_norm = {_normalize(k): v for k, v in typed.items()}
    counts: Counter[str] = Counter()

    pattern = _known_pattern(typed)
    if pattern is not None:

        def known_sub(m: re.Match[str]) -> str:
            kind = by_norm.get(_normalize(m.group(0)), "PHI")
            counts[kind] += 1
            return _placeholder(kind)

        text = pattern.sub(known_sub, text)

    for kind, rule, group in _RULES:
        text = rule.sub(_group_replacer(kind, group, counts), text)
    return text, counts


def _group_replacer(kind: str, group: int, counts: Counter[str]) -> Callable[[re.Match[str]], str]:
    def replace(m: re.Match[str]) -> str:
        counts[kind] += 1
        if group == 0:
            return _placeholder(kind)
        start, end = m.span(group)
        whole_start = m.start(0)
        s = m.group(0)
        return s[: start - whole_start] + _placeholder(kind) + s[end - whole_start :]

    return replace


def name_variants(person_name: str) -> list[str]:
    """Written forms of a DICOM PN ``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX`` (or an
    EDF+ ``Given_Family`` name, or plain ``Given Family``): the raw value, each
    part, ``Given Family``, ``Family, Given``, ``Family Given``, with and
    without middle names and initials."""
    raw = person_name.strip()
    if not raw:
        return []
    out: list[str] = [raw]
    if "^" in raw:
        comps = [c.strip() for c in raw.split("=")[0].split("^")]
        family = comps[0] if comps else ""
        given = comps[1] if len(comps) > 1 else ""
        middle = comps[2] if len(comps) > 2 else ""
    else:
        words = raw.replace("_", " ").split()
        out.append(" ".join(words))
        if len(words) >= 2:
            given, family = words[0], words[-1]
            middle = " ".join(words[1:-1])
        else:
            given, family, middle = "", (words[0] if words else ""), ""
    family_words = family.replace("_", " ").split()
    given_words = given.replace("_", " ").split()
    middle_words = middle.split()
    fam = " ".join(family_words)
    giv = " ".join(given_words)
    for part in (*family_words, *given_words, *middle_words, fam, giv):
        out.append(part)
    if fam and giv:
        out += [f"{giv} {fam}", f"{fam}, {giv}", f"{fam} {giv}", f"{giv}_{fam}"]
        if middle_words:
            mid = " ".join(middle_words)
            initial = middle_words[0][0]
            out += [f"{giv} {mid} {fam}", f"{giv} {initial}. {fam}", f"{giv} {initial} {fam}"]
    seen: dict[str, None] = {}
    for v in out:
        v = v.strip()
        if v and _normalize(v) not in {_normalize(s) for s in seen}:
            seen[v] = None
    return list(seen)


def date_variants(value: str) -> list[str]:
    """Written forms of a date given as DICOM ``YYYYMMDD``, ISO ``YYYY-MM-DD``,
    or EDF+ ``DD-MMM-YYYY``: ISO, US and European numeric forms (with and
    without leading zeros), ``March 2, 2024``, ``2 Mar 2024``, ``02-MAR-2024``,
    ``YYYYMMDD`` and EDF ``dd.mm.yy``. Unparseable input gives ``[value]``."""
    v = value.strip()
    m = re.fullmatch(r"(\d{4})-?(\d{2})-?(\d{2})", v)
    e = re.fullmatch(r"(\d{1,2})[- ]([A-Za-z]{3})[- ](\d{4})", v)
    if m:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    elif e:
        abbrevs = [name[:3].lower() for name in _MONTHS]
        if e.group(2).lower() not in abbrevs:
            return [v] if v else []
        y, mo, d = int(e.group(3)), abbrevs.index(e.group(2).lower()) + 1, int(e.group(1))
    else:
        return [v] if v else []
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return [v]
    month = _MONTHS[mo - 1]
    forms = [
        v,
        f"{y:04d}{mo:02d}{d:02d}",
        f"{y:04d}-{mo:02d}-{d:02d}",
        f"{y:04d}/{mo:02d}/{d:02d}",
        f"{mo:02d}/{d:02d}/{y:04d}",
        f"{mo}/{d}/{y:04d}",
        f"{d:02d}/{mo:02d}/{y:04d}",
        f"{d}/{mo}/{y:04d}",
        f"{d:02d}.{mo:02d}.{y:04d}",
        f"{d:02d}.{mo:02d}.{y % 100:02d}",
        f"{d:02d}-{month[:3].upper()}-{y:04d}",
        f"{month} {d}, {y:04d}",
        f"{month} {d:02d}, {y:04d}",
        f"{month[:3]} {d}, {y:04d}",
        f"{d} {month} {y:04d}",
        f"{d} {month[:3]} {y:04d}",
        f"{d:02d} {month[:3]} {y:04d}",
    ]
    return list(dict.fromkeys(forms))
