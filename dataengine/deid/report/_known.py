"""Known values: the PHI the same study's headers hold (the join), the
written forms a report may use for them (``name_variants``,
``date_variants``), and the pattern that finds them in text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from dataengine.deid.report._vocabulary import MONTHS

__all__ = [
    "date_variants",
    "known_value_pattern",
    "name_variants",
    "normalized",
    "typed_known_values",
]


def normalized(value: str) -> str:
    """``value`` with runs of whitespace as one space, casefolded: how two
    written forms of one known value are compared."""
    return " ".join(value.split()).casefold()


def known_value_pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    """A case-insensitive pattern matching any of ``values`` (one
    alternation, longest first; runs of whitespace inside a value match any
    whitespace). A value must not sit inside a longer word, except at a CJK
    edge (Chinese has no spaces between words). ``None`` when no values."""
    parts = []
    for value in sorted(set(values), key=lambda v: (-len(v), v)):
        words = value.split()
        if not words:
            continue
        body = r"\s+".join(re.escape(w) for w in words)
        left = "" if _is_cjk(words[0][0]) else r"(?<!\w)"
        right = "" if _is_cjk(words[-1][-1]) else r"(?!\w)"
        parts.append(left + body + right)
    if not parts:
        return None
    return re.compile("|".join(parts), re.IGNORECASE)


def _is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff"


def _usable_known(value: str) -> bool:
    """Skip values too short or too generic to redact on sight."""
    v = value.strip()
    if len(v) < 2:
        return False
    digits = sum(c.isdigit() for c in v)
    return not (digits == len(v) and len(v) < 4)


def typed_known_values(known_phi: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    """``{value: type}`` of the known values worth searching: a plain
    iterable is typed ``PHI``; values too short or too generic are dropped."""
    if isinstance(known_phi, Mapping):
        typed = {str(k).strip(): str(v) for k, v in known_phi.items()}
    else:
        typed = {str(k).strip(): "PHI" for k in known_phi}
    return {k: v for k, v in typed.items() if _usable_known(k)}


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
        if v and normalized(v) not in {normalized(s) for s in seen}:
            seen[v] = None
    return list(seen)


def date_variants(value: str) -> list[str]:
    """Written forms of a date given as DICOM ``YYYYMMDD``, ISO ``YYYY-MM-DD``,
    or EDF+ ``DD-MMM-YYYY``: ISO, US and European numeric forms (with and
    without leading zeros), ``March 2, 2024``, ``2 Mar 2024``, ``02-MAR-2024``,
    ``YYYYMMDD``, EDF ``dd.mm.yy`` and ``2024年3月2日``. Unparseable input
    gives ``[value]``."""
    v = value.strip()
    m = re.fullmatch(r"(\d{4})-?(\d{2})-?(\d{2})", v)
    e = re.fullmatch(r"(\d{1,2})[- ]([A-Za-z]{3})[- ](\d{4})", v)
    if m:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    elif e:
        abbrevs = [name[:3].lower() for name in MONTHS]
        if e.group(2).lower() not in abbrevs:
            return [v] if v else []
        y, mo, d = int(e.group(3)), abbrevs.index(e.group(2).lower()) + 1, int(e.group(1))
    else:
        return [v] if v else []
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return [v]
    month = MONTHS[mo - 1]
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
        f"{y}年{mo}月{d}日",
    ]
    return list(dict.fromkeys(forms))
