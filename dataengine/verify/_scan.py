"""Search text for PHI: the report redactor's own patterns plus exact known
values, with every match masked before it is reported.

Known values shaped like dates (``20230415``, ``15.03.23``, ``March 4,
2023``) are not searched in fields that hold dates by design (DICOM DA/DT/TM,
the EDF start date): there a shifted date can equal some other patient's real
date by chance, and no check can tell the two apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dataengine.deid.report import (
    PLACEHOLDER_RE,
    find_phi,
    known_value_pattern,
    parse_written_date,
)
from dataengine.errors import ConfigError

__all__ = ["Finding", "PhiScanner", "load_known_phi", "mask"]

# Placeholders the de-identification writes into text: the report's typed
# ones and the EDF annotation placeholder. They are masked out before scanning.
_WRITTEN_PLACEHOLDERS = re.compile(PLACEHOLDER_RE.pattern + r"|\[REDACTED\]")
# Stands in for a removed placeholder: no pattern matches it or across it.
_GAP = "\u00a4"
_EXCERPT_CHARS = 28
# Context words shown only by their first character: capitalised or
# upper-case words, anything with a digit, and CJK runs (shown as "…").
_MAYBE_PHI = re.compile(r"[A-Z][\w'\-]*|\w*\d[\w\-/.]*")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")


def _hide(text: str) -> str:
    text = _MAYBE_PHI.sub(lambda m: m.group(0)[0] + "…", text)
    return _CJK_RUN.sub("…", text)


@dataclass(frozen=True)
class Finding:
    """One PHI hit in one value (``what`` and ``excerpt`` already masked)."""

    kind: str  # "phi_known" | "phi_pattern"
    where: str
    what: str
    excerpt: str


def mask(value: str) -> str:
    """``'E…' (7 chars)``: the first character and the length, never more."""
    v = value.strip()
    return f"'{v[:1]}…' ({len(v)} chars)" if v else "'' (0 chars)"


def _usable(value: str) -> bool:
    """Values too short to search without chance hits are skipped: fewer than
    3 characters, or a number of fewer than 4 digits."""
    v = value.strip()
    if len(v) < 3:
        return False
    digits = sum(ch.isdigit() for ch in v)
    letters = sum(ch.isalpha() for ch in v)
    return letters > 0 or digits >= 4


def load_known_phi(path: Path) -> list[str]:
    """Known PHI values from ``path``: a JSON list of strings (as
    ``phi_planted.json`` of ``dataengine synth``), a JSON object (its keys,
    as ``{value: type}``), or plain text with one value per line (blank lines
    and lines starting with ``#`` skipped). Raises ``ConfigError``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("verify.known_phi", f"cannot read {path}: {exc}") from exc
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("verify.known_phi", f"{path}: not valid JSON: {exc}") from exc
        items = list(body.keys()) if isinstance(body, dict) else body
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise ConfigError(
                "verify.known_phi", f"{path}: expected a JSON list of strings (or an object)"
            )
        return [v for v in items if v.strip()]
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


class PhiScanner:
    """Scans text values for known PHI values and PHI patterns; counts the
    values it scanned (``values_scanned``)."""

    def __init__(self, known_values: Iterable[str] = ()) -> None:
        values = sorted({v.strip() for v in known_values if _usable(v)})
        self.known_count = len(values)
        self._known = known_value_pattern(values)
        self._known_not_dates = known_value_pattern(
            [v for v in values if parse_written_date(v) is None]
        )
        self.values_scanned = 0

    def scan(
        self,
        text: str,
        where: str,
        *,
        patterns: bool = True,
        date_field: bool = False,
        skip_kinds: frozenset[str] = frozenset(),
    ) -> list[Finding]:
        """Findings in ``text``. ``patterns``: also run the redactor's PHI
        patterns (for free text; off for codes, numbers and UIDs).
        ``date_field``: the value is a date by design, so date-shaped known
        values are not searched (see the module docstring). ``skip_kinds``:
        pattern kinds that are not PHI in this value, as the
        de-identification profile says (``deid.dicom.non_phi_kinds``); known
        values are still searched."""
        self.values_scanned += 1
        if not text:
            return []
        clean = _WRITTEN_PLACEHOLDERS.sub(_GAP, text)
        known = self._known_not_dates if date_field else self._known
        out: list[Finding] = []
        hits: list[tuple[int, int]] = []
        if known is not None:
            for m in known.finditer(clean):
                hits.append(m.span())
                what = f"known PHI value {mask(m.group(0))}"
                out.append(Finding("phi_known", where, what, self._excerpt(clean, *m.span())))
        if patterns:
            for span in find_phi(clean, skip_kinds=skip_kinds):
                if any(s < span.end and span.start < e for s, e in hits):
                    continue  # reported as a known value already
                value = clean[span.start : span.end]
                what = f"{span.kind} pattern {mask(value)}"
                out.append(
                    Finding("phi_pattern", where, what, self._excerpt(clean, span.start, span.end))
                )
        return out

    def _scrub(self, text: str) -> str:
        """``text`` with every PHI pattern and known value replaced by its
        type, then every word that could still be a name or a number cut to
        its first character (``_MAYBE_PHI``): context may hold PHI that no
        check recognises, and an excerpt must not print it."""
        pieces: list[str] = []
        pos = 0
        spans = [(s.start, s.end, s.kind) for s in find_phi(text)]
        if self._known is not None:
            spans += [(m.start(), m.end(), "PHI") for m in self._known.finditer(text)]
        for start, end, kind in sorted(spans):
            if start < pos:
                pos = max(pos, end)
                continue
            pieces += [text[pos:start], f"[{kind}]"]
            pos = end
        pieces.append(text[pos:])
        return "".join(_hide(p) if i % 2 == 0 else p for i, p in enumerate(pieces))

    def _excerpt(self, text: str, start: int, end: int) -> str:
        """Up to ``_EXCERPT_CHARS`` characters each side, cut at whole words
        and scrubbed, around the masked hit."""
        lo = max(0, start - _EXCERPT_CHARS)
        hi = min(len(text), end + _EXCERPT_CHARS)
        left, right = text[lo:start], text[end:hi]
        if lo > 0:
            left = left.split(None, 1)[1] if len(left.split(None, 1)) > 1 else ""
        if hi < len(text):
            right = right.rsplit(None, 1)[0] if len(right.rsplit(None, 1)) > 1 else ""
        body = f"{self._scrub(left)}<<{mask(text[start:end])}>>{self._scrub(right)}"
        body = body.replace(_GAP, "[…]")
        body = " ".join(body.split())
        return f"{'…' if lo > 0 else ''}{body}{'…' if hi < len(text) else ''}"
