"""``PackCounts``: what a run of studies adds up to.

One type counts a shard's share of the run (the studies consumed since the
previous shard closed: it is journaled with the shard, see ``_journal.py``)
and the run's total (the shares of every shard, kept or new, and of the
studies after the last one: ``manifest.json["pack"]`` and the
``PackSummary``). A resumed run reads its kept shares back from the journal,
so its total equals an uninterrupted run's, key order included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dataengine.pack._config import QuarantineEntry
from dataengine.pack._study import StudyResult

__all__ = ["FILE_KINDS", "PackCounts"]

# Always in the totals, in this order, even at zero.
FILE_KINDS = ("dicom", "edf", "report")


@dataclass
class PackCounts:
    """Studies consumed (study ids, in sorted study order), their quarantine
    entries (in order), files decoded by format, and, over the studies that
    produced a record, redactions by type and de-identification counters.
    All counts are numbers of files, elements or matches."""

    studies: list[str] = field(default_factory=list)
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    files_decoded: Counter[str] = field(default_factory=Counter)
    redactions: Counter[str] = field(default_factory=Counter)
    deid: Counter[str] = field(default_factory=Counter)

    @classmethod
    def total(cls, shares: Iterable[PackCounts]) -> PackCounts:
        """The sum of ``shares`` in order (lists concatenated), with every
        ``FILE_KINDS`` counter present."""
        out = cls(files_decoded=Counter(dict.fromkeys(FILE_KINDS, 0)))
        for share in shares:
            out.add(share)
        return out

    def add_study(self, result: StudyResult) -> None:
        """Count one study a worker finished."""
        self.studies.append(result.study)
        self.quarantine.extend(result.quarantine)
        self.files_decoded.update(result.files_decoded)
        if result.value is not None:
            self.redactions.update(result.redactions)
            self.deid.update(result.deid)

    def add(self, other: PackCounts) -> None:
        self.studies.extend(other.studies)
        self.quarantine.extend(other.quarantine)
        self.files_decoded.update(other.files_decoded)
        self.redactions.update(other.redactions)
        self.deid.update(other.deid)

    def quarantined(self) -> dict[str, int]:
        """Quarantine entries by kind, sorted by kind."""
        return dict(sorted(Counter(e.kind for e in self.quarantine).items()))

    def to_json_dict(self) -> dict[str, Any]:
        """The journal's fields (``_journal.py``)."""
        return {
            "studies": list(self.studies),
            "quarantine": [e.to_json_dict() for e in self.quarantine],
            "files_decoded": dict(self.files_decoded),
            "redactions": dict(self.redactions),
            "deid": dict(self.deid),
        }

    @classmethod
    def from_json_dict(cls, body: dict[str, Any]) -> PackCounts:
        """Parse the journal's fields; ``ValueError``/``KeyError``/``TypeError`` if malformed."""
        return cls(
            studies=[str(s) for s in body["studies"]],
            quarantine=[QuarantineEntry(**e) for e in body["quarantine"]],
            files_decoded=Counter({str(k): int(v) for k, v in body["files_decoded"].items()}),
            redactions=Counter({str(k): int(v) for k, v in body["redactions"].items()}),
            deid=Counter({str(k): int(v) for k, v in body["deid"].items()}),
        )
