"""Redaction: the spans ``find_phi`` finds (known values, then the pattern
rules) replaced by typed placeholders, dates moved by the patient's shift."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from dataengine.deid.report._dates import shifted_iso_date
from dataengine.deid.report._known import known_value_pattern, normalized, typed_known_values
from dataengine.deid.report._rules import pattern_spans

__all__ = ["PLACEHOLDER_RE", "PLACEHOLDER_TYPES", "PhiSpan", "find_phi", "redact_report"]

PLACEHOLDER_TYPES = ("NAME", "MRN", "ID", "PHONE", "DATE", "EMAIL", "ORG", "ADDRESS", "PHI")

# A placeholder this module writes: ``[NAME]``, ``[DATE]``, ``[DATE:2020-11-27]``.
PLACEHOLDER_RE = re.compile(r"\[(?:" + "|".join(PLACEHOLDER_TYPES) + r")(?::\d{4}-\d{2}-\d{2})?\]")


@dataclass(frozen=True)
class PhiSpan:
    """One PHI span ``text[start:end]`` of type ``kind`` (a ``PLACEHOLDER_TYPES`` member)."""

    start: int
    end: int
    kind: str


def _merge(spans: Iterable[tuple[int, int, str, int]]) -> list[PhiSpan]:
    """Union of overlapping spans; each union takes the type of its
    highest-priority (lowest rank) member."""
    out: list[tuple[int, int, str, int]] = []
    for start, end, kind, rank in sorted(spans):
        if out and start < out[-1][1]:
            s0, e0, k0, r0 = out[-1]
            out[-1] = (s0, max(e0, end), k0 if r0 <= rank else kind, min(r0, rank))
        else:
            out.append((start, end, kind, rank))
    return [PhiSpan(s, e, k) for s, e, k, _ in out]


def find_phi(
    text: str,
    known_phi: Mapping[str, str] | Iterable[str] = (),
    *,
    skip_kinds: Collection[str] = (),
) -> list[PhiSpan]:
    """PHI spans in ``text``, sorted and non-overlapping: known values first
    (see ``redact_report`` for ``known_phi``), then every pattern rule.
    ``skip_kinds``: pattern kinds left out, before overlapping spans merge
    (so a skipped span never hides another kind's); known values are never
    skipped."""
    typed = typed_known_values(known_phi)
    spans: list[tuple[int, int, str, int]] = []
    pattern = known_value_pattern(typed)
    if pattern is not None:
        by_norm = {normalized(k): v for k, v in typed.items()}
        for m in pattern.finditer(text):
            spans.append((m.start(), m.end(), by_norm.get(normalized(m.group(0)), "PHI"), 0))
    for rank, (start, end, kind) in enumerate(pattern_spans(text), start=1):
        if kind not in skip_kinds:
            spans.append((start, end, kind, rank))
    return _merge(spans)


# A birth date stays "[DATE]" even under a shift: the DICOM of the study
# empties PatientBirthDate in both date modes, and a shifted birth date next to
# a shifted exam date would still give the exact age.
_BIRTH_LABEL = re.compile(
    r"(?:(?i:(?<![A-Za-z])(?:DOB|D\.O\.B\.?|date[ \t]+of[ \t]+birth|birth[ \t]*date"
    r"|born(?:[ \t]+on)?))"
    r"|出生日期|出生年月日|出生年月|出生|生日)[ \t]*[:\uff1a]?[ \t]*$"
)


def redact_report(
    text: str,
    known_phi: Mapping[str, str] | Iterable[str] = (),
    *,
    date_shift_days: int | None = None,
) -> tuple[str, Counter[str]]:
    """Return ``text`` with PHI replaced by typed placeholders, and the number
    of replacements per type (``NAME``, ``MRN``, ``ID``, ``PHONE``, ``DATE``,
    ``EMAIL``, ``ADDRESS``, and for known values also ``ORG``; untyped known
    values count as ``PHI``).

    ``known_phi`` maps exact values from the study's headers to their type
    (a plain iterable of values is typed ``PHI``); values shorter than two
    characters and numbers shorter than four digits are ignored.
    ``date_shift_days``: days added to every date (negative moves it back);
    a shifted date is written ``[DATE:YYYY-MM-DD]``, except a birth date (after
    ``DOB``, ``born``, ``出生日期`` ...), which stays ``[DATE]`` as the DICOM
    ``PatientBirthDate`` is emptied. ``None`` writes ``[DATE]`` everywhere.
    """
    counts: Counter[str] = Counter()
    pieces: list[str] = []
    pos = 0
    for span in find_phi(text, known_phi):
        pieces.append(text[pos : span.start])
        placeholder = f"[{span.kind}]"
        if (
            span.kind == "DATE"
            and date_shift_days is not None
            and _BIRTH_LABEL.search(text, max(0, span.start - 24), span.start) is None
        ):
            iso = shifted_iso_date(text[span.start : span.end], date_shift_days)
            if iso is not None:
                placeholder = f"[DATE:{iso}]"
        pieces.append(placeholder)
        counts[span.kind] += 1
        pos = span.end
    pieces.append(text[pos:])
    return "".join(pieces), counts
