"""``pack-journal.jsonl``: what an unfinished pack run has durably written.

A pack run appends one line per completed shard, after the shard file is
renamed into place and its directory entry synced; the line is flushed and
fsync'd before the run goes on. The first line is a header with the run's
fingerprint (raw folder, study list, key id, de-identification profile and
every output-relevant ``PackConfig`` field). A later run of the same command
into the same folder keeps the shards the journal lists whose SHA-256 still
verifies and continues with the first study they do not cover; counters and
quarantine entries of the covered studies come back from the journal, so the
finished manifest equals the one an uninterrupted run writes. The journal is
removed once ``manifest.json`` is written.

Line formats (JSON, one object per line)::

    {"journal": "medstream-pack-journal", "version": 1, "fingerprint": {...}}
    {"shard": {ShardEntry fields}, "studies": [folder names],
     "quarantine": [QuarantineEntry dicts], "files_decoded": {...},
     "redactions": {...}, "deid": {...}}

(every field but ``shard`` is the shard's ``PackCounts``, ``_counts.py``).

A shard line covers the studies consumed since the previous shard closed, up
to and including the one whose record filled it, so studies that produced no
record (all their files quarantined) are covered too and sample ids stay
identical on resume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dataengine import journal
from dataengine.deid.dicom import PROFILE
from dataengine.errors import PackError
from dataengine.journal import fingerprint_differences
from dataengine.pack._config import PackConfig
from dataengine.pack._counts import PackCounts
from dataengine.shards import SCHEMA_VERSION, ShardEntry, file_sha256

__all__ = [
    "JOURNAL_NAME",
    "JournalShard",
    "PackJournal",
    "fingerprint_differences",
    "read_journal",
    "run_fingerprint",
]

_LOG = logging.getLogger(__name__)

JOURNAL_NAME = "pack-journal.jsonl"
_FORMAT = "medstream-pack-journal"
_VERSION = 1
# Fields of PackConfig that do not change what is written (every other field,
# present or future, is part of the fingerprint).
_NOT_FINGERPRINTED = frozenset({"workers", "name", "key"})


@dataclass(frozen=True)
class JournalShard:
    """One completed shard and its share of the run's counts: the studies it
    covers (in sorted study order), their quarantine entries and counters."""

    shard: ShardEntry
    counts: PackCounts

    def to_line(self) -> str:
        body = {"shard": asdict(self.shard), **self.counts.to_json_dict()}
        return json.dumps(body, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> JournalShard:
        """Parse one shard line; ``ValueError``/``KeyError``/``TypeError`` if malformed."""
        return cls(shard=ShardEntry(**body["shard"]), counts=PackCounts.from_json_dict(body))


def _fingerprint_value(value: Any) -> Any:
    """A JSON-safe, order-stable stand-in for one config value (dataclasses
    field by field, sets sorted); a ``Path`` that names a file is hashed."""
    if isinstance(value, Path):
        if value.is_file():
            return {"path": str(value.resolve()), "sha256": file_sha256(value)}
        return str(value.resolve())
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _fingerprint_value(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
    if isinstance(value, dict):
        return {str(k): _fingerprint_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_fingerprint_value(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [_fingerprint_value(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return repr(value)


def _top_level_files(raw_dir: Path) -> list[list[Any]]:
    """``[name, size, sha256]`` of the regular files directly in ``raw_dir``
    (an index file, ``phi_planted.json``): they may steer how studies pack."""
    return [
        [p.name, p.stat().st_size, file_sha256(p)]
        for p in sorted(raw_dir.iterdir())
        if p.is_file() and not p.name.startswith(".")
    ]


def run_fingerprint(raw_dir: Path, studies: Sequence[str], config: PackConfig) -> dict[str, Any]:
    """Everything that decides the bytes a pack run writes, as a JSON object.

    The raw folder (resolved), the sorted study list (count and SHA-256), the
    top-level files of the raw folder, the key id, the de-identification
    profile, the record schema version and every ``PackConfig`` field except
    ``workers``, ``name`` and ``key`` (a ``Path`` field that names a file is
    fingerprinted by content). Contents of study folders are not hashed.
    """
    listing = "\n".join(str(s) for s in studies).encode("utf-8")
    fp: dict[str, Any] = {
        "raw_dir": str(Path(raw_dir).resolve()),
        "studies": len(studies),
        "studies_sha256": hashlib.sha256(listing).hexdigest(),
        "raw_top_level_files": _top_level_files(Path(raw_dir)),
        "key_id": config.key.key_id,
        "deid_profile": PROFILE,
        "schema_version": SCHEMA_VERSION,
    }
    for f in dataclasses.fields(config):
        if f.name not in _NOT_FINGERPRINTED:
            fp[f"config.{f.name}"] = _fingerprint_value(getattr(config, f.name))
    # Round-trip through JSON so a fresh fingerprint compares equal to a loaded one.
    result: dict[str, Any] = json.loads(json.dumps(fp, sort_keys=True))
    return result


def read_journal(path: Path) -> tuple[dict[str, Any], list[JournalShard]]:
    """The fingerprint and the shard lines of a journal (``dataengine.journal``:
    a torn or unparsable line ends the list). Raises ``PackError`` when the
    header itself is unreadable."""
    try:
        header, shards = journal.read_journal(path, _FORMAT, _VERSION, JournalShard.from_dict)
        return dict(header["fingerprint"]), shards
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PackError(
            f"{path}: unreadable pack journal ({exc}); rerun with --restart "
            "(restart=True) to discard the unfinished run"
        ) from exc


def verified_prefix(
    dataset_dir: Path, shards: Sequence[JournalShard], studies: Sequence[str]
) -> list[JournalShard]:
    """The leading journal shards that still hold: numbered in order, sample
    ids contiguous, studies continuing the sorted study list, and the file
    present with the recorded size and SHA-256. The first that fails ends it."""
    kept: list[JournalShard] = []
    next_study = next_sample = 0
    for i, entry in enumerate(shards):
        s = entry.shard
        path = Path(dataset_dir) / s.file
        end = next_study + len(entry.counts.studies)
        problem = ""
        if s.shard_id != i or s.first_sample_id != next_sample or s.num_samples < 1:
            problem = "out of sequence"
        elif list(studies[next_study:end]) != entry.counts.studies:
            problem = "its studies do not continue the study list"
        elif not path.is_file() or path.stat().st_size != s.size_bytes:
            problem = "file missing or of the wrong size"
        elif file_sha256(path) != s.sha256:
            problem = "file fails its SHA-256"
        if problem:
            _LOG.warning("journal shard %d (%s): %s; packing again from there", i, s.file, problem)
            break
        kept.append(entry)
        next_study, next_sample = end, next_sample + s.num_samples
    return kept


class PackJournal:
    """The append-only journal of one pack run (see the module docstring),
    kept in a ``dataengine.journal.Journal``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = journal.Journal(self.path)

    @classmethod
    def create(
        cls, path: Path, fingerprint: dict[str, Any], shards: Sequence[JournalShard] = ()
    ) -> PackJournal:
        """Write (atomically, synced) a journal holding the header and ``shards``."""
        header = {"journal": _FORMAT, "version": _VERSION, "fingerprint": fingerprint}
        journal.Journal.create(path, header, (s.to_line() for s in shards))
        return cls(path)

    def append(self, entry: JournalShard) -> None:
        """Append one shard line and fsync it before returning."""
        self._file.append(entry.to_line())

    def remove(self) -> None:
        self._file.remove()
