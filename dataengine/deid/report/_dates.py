"""Written dates: which calendar day a date in report text names (the
reading rules: ``dataengine/deid/README.md``), the checks the date patterns
use, and a date moved by the patient's shift."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from dataengine.deid.report._vocabulary import AMBIGUOUS_MONTH_WORDS, MONTHS

__all__ = [
    "is_calendar_date",
    "is_unambiguous_month_year",
    "is_unambiguous_named_date",
    "parse_written_date",
    "shifted_iso_date",
]


def _two_digit_year(yy: int) -> int:
    return 2000 + yy if yy < 50 else 1900 + yy


def _month_number(word: str) -> int | None:
    w = word.lower().rstrip(".")
    for i, name in enumerate(MONTHS):
        if w == name.lower() or (len(w) >= 3 and name.lower().startswith(w)):
            return i + 1
    return None


def _make_date(y: int, m: int, d: int) -> dt.date | None:
    try:
        return dt.date(y, m, d)
    except ValueError:
        return None


_DATE_FORMS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], dt.date | None]], ...] = (
    (
        re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?"),
        lambda m: _make_date(int(m[1]), int(m[2]), int(m[3])),
    ),
    (
        re.compile(r"(\d{4})(\d{2})(\d{2})"),
        lambda m: _make_date(int(m[1]), int(m[2]), int(m[3])),
    ),
    (
        re.compile(r"(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})"),
        lambda m: _numeric_dmy(int(m[1]), m[2], int(m[3]), m[4]),
    ),
    (
        re.compile(r"(\d{1,2})(?:st|nd|rd|th)?[ \-]?(?:of\s+)?([A-Za-z]+)\.?,?[ \-](\d{4}|\d{2})"),
        lambda m: _named(m[3], m[2], int(m[1])),
    ),
    (
        re.compile(r"([A-Za-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})"),
        lambda m: _named(m[3], m[1], int(m[2])),
    ),
)


def _year(text: str) -> int:
    return int(text) if len(text) == 4 else _two_digit_year(int(text))


def _numeric_dmy(a: int, sep: str, b: int, year: str) -> dt.date | None:
    y = _year(year)
    if sep == "." or a > 12:
        return _make_date(y, b, a)
    return _make_date(y, a, b)


def _named(year: str, month_word: str, day: int) -> dt.date | None:
    month = _month_number(month_word)
    return None if month is None else _make_date(_year(year), month, day)


def parse_written_date(text: str) -> dt.date | None:
    """The calendar day a written date names, or ``None`` when it names no
    single valid day. ``a/b/yyyy`` and ``a-b-yyyy`` are month/day (US)
    unless ``a > 12``; ``a.b.yyyy`` is day.month; a two-digit year ``yy`` is
    ``20yy`` below 50 and ``19yy`` otherwise."""
    t = text.strip()
    for pattern, build in _DATE_FORMS:
        m = pattern.fullmatch(t)
        if m:
            return build(m)
    return None


def is_calendar_date(text: str) -> bool:
    """``text`` names a real calendar day (``parse_written_date``)."""
    return parse_written_date(text) is not None


def is_unambiguous_month_year(text: str) -> bool:
    """A month-and-year match whose month word is not also a lowercase
    English word (``may 2021`` is not a date)."""
    word = re.match(r"[A-Za-z]+", text.strip())
    return word is None or word.group(0) not in AMBIGUOUS_MONTH_WORDS


def is_unambiguous_named_date(text: str) -> bool:
    """A named-month date that names a real day, with no month word that is
    also a lowercase English word."""
    words = re.findall(r"[A-Za-z]+", text)
    if any(w in AMBIGUOUS_MONTH_WORDS for w in words):
        return False
    return is_calendar_date(text)


def shifted_iso_date(text: str, days: int) -> str | None:
    """The day ``text`` names moved by ``days`` (negative: back), as
    ``YYYY-MM-DD``; ``None`` when it names no day or leaves the calendar."""
    day = parse_written_date(text)
    if day is None:
        return None
    try:
        return (day + dt.timedelta(days=days)).isoformat()
    except OverflowError:
        return None
