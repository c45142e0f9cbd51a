"""The journals of an unfinished prepare run, and the locks that keep two
runs from writing the same shard.

Each part of a run (``--part I/N``; a run without ``--part`` is part 0/1)
appends to its own journal in the view folder, ``prepare-journal.jsonl``
(one part) or ``prepare-journal.part-I-of-N.jsonl``, one line per shard
after the shard file is renamed into place and the folder synced; the line
is flushed and fsync'd before the run goes on. The first line is a header
with the run's fingerprint: everything that decides the bytes written (the
prefix fields and key, the source fingerprint, the stored format) and the
part count. A later run keeps the journaled shards whose file still has
its size and SHA-256, so values need not be computed again; a journal with
another fingerprint is refused, naming the fields that differ.

While a part runs it holds an exclusive ``flock`` on
``prepare.part-I-of-N.lock``: a second run of the same part, or a run that
would discard its journal, fails at once instead of writing the same
files. The run that finds every shard journaled takes ``prepare.lock``
before it writes ``manifest.json``, so two parts finishing together do not
both write it.

Line formats (JSON, one object per line)::

    {"journal": "medstream-prepare-journal", "version": 1,
     "part": [I, N], "fingerprint": {...}}
    {"shard": {ShardEntry fields}, "failed": [FailedSample dicts],
     "source_bytes": B, "worker_cpu_s": S}
"""

from __future__ import annotations

import fcntl
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from dataengine import journal
from dataengine.journal import fingerprint_differences
from dataengine.pipeline.spec import PipelineSpec
from dataengine.pipeline.stored import PREFIX_ZSTD_LEVEL
from dataengine.prepared._config import PrepareError
from dataengine.prepared._manifest import (
    PREPARED_SCHEMA_VERSION,
    FailedSample,
    source_fingerprint,
)
from dataengine.shards import Manifest, ShardEntry, file_sha256

__all__ = [
    "FINISH_LOCK_NAME",
    "JournalShard",
    "PartLock",
    "PrepareJournal",
    "fingerprint_differences",
    "journal_name",
    "list_journals",
    "lock_name",
    "read_journal",
    "run_fingerprint",
    "shard_problem",
]

_LOG = logging.getLogger(__name__)

_FORMAT = "medstream-prepare-journal"
_VERSION = 1
FINISH_LOCK_NAME = "prepare.lock"
_JOURNAL_RE = re.compile(r"^prepare-journal(?:\.part-(\d+)-of-(\d+))?\.jsonl$")


def journal_name(part: tuple[int, int]) -> str:
    index, count = part
    if count == 1:
        return "prepare-journal.jsonl"
    return f"prepare-journal.part-{index}-of-{count}.jsonl"


def lock_name(part: tuple[int, int]) -> str:
    return f"prepare.part-{part[0]}-of-{part[1]}.lock"


def list_journals(directory: Path) -> dict[tuple[int, int], Path]:
    """The journal files in ``directory`` by the part their name says."""
    found: dict[tuple[int, int], Path] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        m = _JOURNAL_RE.match(path.name)
        if m and path.is_file():
            part = (int(m.group(1)), int(m.group(2))) if m.group(1) else (0, 1)
            found[part] = path
    return found


def run_fingerprint(spec: PipelineSpec, dataset: Manifest, parts: int) -> dict[str, Any]:
    """Everything that decides the bytes a prepare run writes, and the part
    count (parts of another layout would own other shards), as JSON."""
    fp: dict[str, Any] = {
        "dataset": dataset.name,
        "source_fingerprint": source_fingerprint(dataset),
        "prefix_key": spec.prefix_key(),
        "prefix_zstd_level": PREFIX_ZSTD_LEVEL,
        "prepared_schema_version": PREPARED_SCHEMA_VERSION,
        "parts": parts,
    }
    for name, value in spec.prefix_fields().items():
        fp[f"prefix.{name}"] = value
    result: dict[str, Any] = json.loads(json.dumps(fp, sort_keys=True))
    return result


@dataclass(frozen=True)
class JournalShard:
    """One finished shard of the view: its entry, the studies in it whose
    prefix failed, the size of the source shard and the CPU seconds the
    workers spent on it."""

    shard: ShardEntry
    failed: tuple[FailedSample, ...]
    source_bytes: int
    worker_cpu_s: float

    def to_line(self) -> str:
        body = {
            "shard": asdict(self.shard),
            "failed": [asdict(f) for f in self.failed],
            "source_bytes": self.source_bytes,
            "worker_cpu_s": round(self.worker_cpu_s, 6),
        }
        return json.dumps(body, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> JournalShard:
        """Parse one shard line; ``ValueError``/``KeyError``/``TypeError`` if malformed."""
        return cls(
            shard=ShardEntry(**body["shard"]),
            failed=tuple(FailedSample(**f) for f in body["failed"]),
            source_bytes=int(body["source_bytes"]),
            worker_cpu_s=float(body["worker_cpu_s"]),
        )


def read_journal(path: Path) -> tuple[tuple[int, int], dict[str, Any], list[JournalShard]]:
    """The part, fingerprint and shard lines of a journal (``dataengine.journal``:
    a torn or unparsable line ends the list); an unreadable header is a
    ``PrepareError``."""
    try:
        header, shards = journal.read_journal(path, _FORMAT, _VERSION, JournalShard.from_dict)
        index, count = (int(v) for v in header["part"])
        return (index, count), dict(header["fingerprint"]), shards
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PrepareError(
            f"{path}: unreadable prepare journal ({exc}); rerun with --restart "
            "(restart=True) to discard the unfinished run"
        ) from exc


def shard_problem(directory: Path, entry: JournalShard, source: ShardEntry) -> str:
    """Why a journaled shard cannot be kept ("" when it can): its range is
    not the source shard's, or its file is missing, of the wrong size or
    fails its SHA-256."""
    s = entry.shard
    path = Path(directory) / s.file
    if (s.shard_id, s.file, s.first_sample_id, s.num_samples) != (
        source.shard_id,
        source.file,
        source.first_sample_id,
        source.num_samples,
    ):
        return "its sample range is not the source shard's"
    if not path.is_file() or path.stat().st_size != s.size_bytes:
        return "file missing or of the wrong size"
    if file_sha256(path) != s.sha256:
        return "file fails its SHA-256"
    return ""


class PrepareJournal:
    """The append-only journal of one part (see the module docstring), kept
    in a ``dataengine.journal.Journal``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = journal.Journal(self.path)

    @classmethod
    def create(
        cls,
        path: Path,
        part: tuple[int, int],
        fingerprint: dict[str, Any],
        shards: list[JournalShard],
    ) -> PrepareJournal:
        """Write (atomically, synced) a journal holding the header and ``shards``."""
        header = {
            "journal": _FORMAT,
            "version": _VERSION,
            "part": list(part),
            "fingerprint": fingerprint,
        }
        journal.Journal.create(path, header, (s.to_line() for s in shards))
        return cls(path)

    def append(self, entry: JournalShard) -> None:
        """Append one shard line and fsync it before returning."""
        self._file.append(entry.to_line())


class PartLock:
    """An exclusive ``flock`` on a lock file, held until ``release``.
    ``blocking=False`` raises ``PrepareError`` at once when another process
    holds it (``busy`` says who, for the message)."""

    def __init__(self, path: Path, *, blocking: bool, busy: str) -> None:
        self.path = Path(path)
        self._file: IO[bytes] | None = open(self.path, "ab")  # noqa: SIM115 (held open)
        try:
            flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
            fcntl.flock(self._file.fileno(), flags)
        except BlockingIOError:
            self._file.close()
            self._file = None
            raise PrepareError(f"{busy} (it holds {self.path})") from None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> PartLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
