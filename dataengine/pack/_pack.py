"""``pack_dataset``: raw study folders in, an immutable dataset out.

Three phases around one ``PackCounts`` (``_counts.py``):

- plan: check the destination, discover the studies, resume the journal of
  an unfinished run (its verified shards are kept, with their counts);
- write: pack the studies not yet covered (``_pool.py``), re-stamp sample
  ids, write shards in order and journal each with its share of the counts;
- finalize: ``quarantine.jsonl``, then ``manifest.json`` last (a dataset
  without a manifest is not a dataset), from the run's total counts, which
  the returned ``PackSummary`` reports too.

Crash safety: every shard is synced and renamed into place, then journaled
(``pack-journal.jsonl``, see ``_journal.py``). Running the same command again
after a crash keeps the journaled shards that verify, restores their counts
and packs on from the first study they do not cover; the finished dataset
equals an uninterrupted run's. ``on_event`` lets a caller (a test) act at
each of those points, e.g. kill the process there.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataengine.audit import dataset_audit
from dataengine.deid.dicom import PROFILE
from dataengine.errors import PackError
from dataengine.pack._config import PackConfig, PackSummary, QuarantineEntry
from dataengine.pack._counts import PackCounts
from dataengine.pack._discover import StudySource, discover_sources
from dataengine.pack._journal import (
    JOURNAL_NAME,
    JournalShard,
    PackJournal,
    fingerprint_differences,
    read_journal,
    run_fingerprint,
    verified_prefix,
)
from dataengine.pack._pool import study_results
from dataengine.pack._study import StudyResult, StudyTask
from dataengine.progress import Progress
from dataengine.shards import (
    MANIFEST_NAME,
    Manifest,
    ShardWriter,
    atomic_write_bytes,
    decode_record,
    encode_record,
)

__all__ = ["JOURNAL_NAME", "QUARANTINE_NAME", "PackEvent", "pack_dataset"]

_LOG = logging.getLogger(__name__)

QUARANTINE_NAME = "quarantine.jsonl"
_LEFTOVER_PATTERNS = ("*.tmp", "*.tmp-lock", "shard-*.lmdb", QUARANTINE_NAME)

PackEvent = Callable[[str, int], None]
"""``on_event(event, n)`` of ``pack_dataset``, called in the packing process:
``("sample", n)`` after the n-th sample of the dataset is added to the shard
being written, ``("shard", n)`` after the n-th shard file is renamed into
place (not yet journaled), ``("journal", n)`` after the n-th shard is
journaled. ``n`` counts from the dataset's start, shards kept by a resumed
run included."""


def _no_event(event: str, count: int) -> None:
    return None


def _prepare_destination(raw_dir: Path, dataset_dir: Path) -> None:
    if not raw_dir.is_dir():
        raise PackError(f"raw folder {raw_dir} does not exist or is not a directory")
    raw_abs, out_abs = raw_dir.resolve(), dataset_dir.resolve()
    if out_abs == raw_abs or raw_abs in out_abs.parents:
        raise PackError(
            f"dataset folder {dataset_dir} is inside the raw folder {raw_dir}; "
            "it would be read back as a study: choose a folder outside it"
        )
    if (dataset_dir / MANIFEST_NAME).exists():
        raise PackError(
            f"{dataset_dir} already holds a packed dataset ({MANIFEST_NAME}); datasets are "
            "immutable: pack into a new folder, or delete the old dataset first"
        )
    if dataset_dir.exists() and not dataset_dir.is_dir():
        raise PackError(f"{dataset_dir} exists and is not a directory")
    dataset_dir.mkdir(parents=True, exist_ok=True)


def _remove_leftovers(dataset_dir: Path, keep: set[str]) -> None:
    """No manifest: anything we would write, except the shards ``keep`` names,
    is left over from a crashed run."""
    for pattern in _LEFTOVER_PATTERNS:
        for stale in dataset_dir.glob(pattern):
            if stale.is_file() and stale.name not in keep:
                _LOG.warning("removing %s left by an earlier, unfinished pack run", stale)
                stale.unlink()


def _open_journal(
    dataset_dir: Path, fingerprint: dict[str, Any], studies: list[str], restart: bool
) -> tuple[PackJournal, list[JournalShard]]:
    """Resume the unfinished run journaled in ``dataset_dir`` (or discard it
    when ``restart``); return the journal to append to and the shards kept."""
    path = dataset_dir / JOURNAL_NAME
    done: list[JournalShard] = []
    if path.exists() and restart:
        _LOG.warning("restart: discarding the unfinished pack run in %s", dataset_dir)
    elif path.exists():
        old, entries = read_journal(path)
        differs = fingerprint_differences(old, fingerprint)
        if differs:
            raise PackError(
                f"{dataset_dir} holds an unfinished pack run with other settings (they differ "
                f"in: {', '.join(differs)}); rerun the original command to resume it, pack into "
                "a new folder, or pass --restart (restart=True) to discard it"
            )
        done = verified_prefix(dataset_dir, entries, studies)
    _remove_leftovers(dataset_dir, keep={e.shard.file for e in done})
    journal = PackJournal.create(path, fingerprint, done)
    if done:
        _LOG.warning(
            "resuming an unfinished pack run in %s: %d shards (%d samples, %d studies) kept",
            dataset_dir,
            len(done),
            sum(e.shard.num_samples for e in done),
            sum(len(e.counts.studies) for e in done),
        )
    return journal, done


# -- plan --------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What a run packs, decided before any study is: every study (sorted),
    the shards an unfinished run left that are kept, and the journal."""

    raw_dir: Path
    dataset_dir: Path
    name: str
    studies: tuple[str, ...]
    sources: dict[str, StudySource]
    discovery_quarantine: tuple[QuarantineEntry, ...]  # bad index lines: found again on resume
    journal: PackJournal
    done: tuple[JournalShard, ...]

    @property
    def covered(self) -> int:
        """Studies the kept shards cover (the first ``covered`` of ``studies``)."""
        return sum(len(e.counts.studies) for e in self.done)


def _plan(raw_dir: Path, dataset_dir: Path, config: PackConfig, restart: bool) -> _Plan:
    _prepare_destination(raw_dir, dataset_dir)
    discovery = discover_sources(raw_dir, config.index_file)  # folders, or the index file
    studies = tuple(s.study_id for s in discovery.sources)
    _LOG.info(
        "packing %d studies from %s into %s with %d workers",
        len(studies),
        raw_dir,
        dataset_dir,
        config.workers,
    )
    fingerprint = run_fingerprint(raw_dir, studies, config)
    journal, done = _open_journal(dataset_dir, fingerprint, list(studies), restart)
    return _Plan(
        raw_dir=raw_dir,
        dataset_dir=dataset_dir,
        name=config.name or dataset_dir.resolve().name,
        studies=studies,
        sources={s.study_id: s for s in discovery.sources},
        discovery_quarantine=tuple(discovery.quarantine),
        journal=journal,
        done=tuple(done),
    )


# -- write -------------------------------------------------------------------


class _Ids:
    """Sample-id bookkeeping: ids are contiguous over *packed* studies. A task
    is submitted with its best guess (studies submitted minus failures known
    so far); a wrong guess costs one re-encode in the parent."""

    def __init__(self, start: int = 0) -> None:
        self.start = start  # samples packed by an earlier, resumed run
        self.submitted = 0
        self.failed_known = 0
        self.packed = start
        self.restamped = 0

    def next_guess(self) -> int:
        guess = self.start + self.submitted - self.failed_known
        self.submitted += 1
        return guess


class _ShardSink:
    """The write phase's state: records go into shards of ``shard_samples``
    in sample order; each full shard is renamed into place and journaled
    with ``pending``, the counts of the studies consumed since the last."""

    def __init__(self, plan: _Plan, shard_samples: int, on_event: PackEvent) -> None:
        self.dataset_dir = plan.dataset_dir
        self.journal = plan.journal
        self.shard_samples = shard_samples
        self.on_event = on_event
        self.entries: list[JournalShard] = list(plan.done)
        self.pending = PackCounts()
        self.writer: ShardWriter | None = None
        self.ids = _Ids(start=sum(e.shard.num_samples for e in plan.done))

    def add(self, result: StudyResult) -> None:
        """Count one finished study and write its record, if it has one,
        under the next sample id."""
        self.pending.add_study(result)
        if result.value is None:
            self.ids.failed_known += 1
            return
        sample_id, value = self.ids.packed, result.value
        if result.sample_id != sample_id:
            record = decode_record(value)
            record.sample_id = sample_id
            value = encode_record(record)
            self.ids.restamped += 1
        if self.writer is None:
            self.writer = ShardWriter(self.dataset_dir, len(self.entries), sample_id)
        self.writer.add(sample_id, value)
        self.ids.packed += 1
        self.on_event("sample", self.ids.packed)
        if self.writer.num_samples >= self.shard_samples:
            self.close_shard()

    def close_shard(self) -> None:
        """Rename the shard being written into place and journal it (no-op
        when none is open)."""
        if self.writer is None:
            return
        entry = JournalShard(self.writer.close(), self.pending)
        number = len(self.entries) + 1
        self.on_event("shard", number)
        self.journal.append(entry)
        self.entries.append(entry)
        self.pending = PackCounts()
        self.on_event("journal", number)
        self.writer = None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def _write(plan: _Plan, config: PackConfig, on_event: PackEvent) -> _ShardSink:
    """Pack every study the kept shards do not cover, in study order."""
    sink = _ShardSink(plan, config.shard_samples, on_event)
    todo = plan.studies[plan.covered :]

    def tasks() -> Iterator[StudyTask]:
        for study in todo:
            yield StudyTask(
                raw_dir=str(plan.raw_dir),
                study=study,
                sample_id=sink.ids.next_guess(),
                key=config.key,
                max_file_bytes=config.max_file_bytes,
                policy=config.deid,
                source=plan.sources[study],
                report_field=config.report_json_field,
            )

    meter = Progress("pack", len(plan.studies), initial=plan.covered)
    try:
        for result in study_results(tasks(), len(todo), config.workers):
            meter.advance()
            sink.add(result)
        sink.close_shard()
    except BaseException:
        sink.abort()
        meter.close(stopped=True)
        raise
    meter.close()
    return sink


# -- finalize ----------------------------------------------------------------


def _deid_section(deid: dict[str, int], config: PackConfig) -> dict[str, Any]:
    return {
        "profile": PROFILE,
        "key_id": config.key.key_id,
        "insecure_demo_key": config.key.insecure,
        "private_tags_removed": deid["private_tags_removed"],
        "uids_remapped": deid["uids_remapped"],
        "dicom_elements_removed": deid["dicom_elements_removed"],
        "edf_headers_rewritten": deid["edf_headers_rewritten"],
        **dict(sorted(deid.items())),
        "date_mode": config.deid.date_mode,
        "policy": config.deid.describe(),
    }


def _finalize(plan: _Plan, sink: _ShardSink, config: PackConfig, start: float) -> PackSummary:
    """Write ``quarantine.jsonl`` and ``manifest.json`` from the run's total
    counts, remove the journal and return the summary of the same counts."""
    counts = PackCounts.total(
        [
            PackCounts(quarantine=list(plan.discovery_quarantine)),  # bad index lines first
            *(e.counts for e in sink.entries),
            sink.pending,  # studies after the last record: no shard covers them
        ]
    )
    lines = "".join(json.dumps(e.to_json_dict(), sort_keys=True) + "\n" for e in counts.quarantine)
    atomic_write_bytes(plan.dataset_dir / QUARANTINE_NAME, lines.encode("utf-8"))
    deid = _deid_section(counts.deid, config)
    pack_section: dict[str, Any] = {
        "studies_seen": len(plan.studies),
        "studies_packed": sink.ids.packed,
        "files_decoded": dict(counts.files_decoded),
        "quarantined": counts.quarantined(),
        "quarantine_file": QUARANTINE_NAME,
        "redactions": dict(sorted(counts.redactions.items())),
        "deid": deid,
        "shard_samples": config.shard_samples,
    }
    manifest = Manifest(
        name=plan.name,
        created_utc=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        shards=tuple(e.shard for e in sink.entries),
        pack=pack_section,
    )
    atomic_write_bytes(plan.dataset_dir / MANIFEST_NAME, manifest.to_json().encode("utf-8"))
    plan.journal.remove()  # the manifest now says everything it said
    elapsed = time.perf_counter() - start
    restamped = sink.ids.restamped
    if restamped:
        _LOG.info("re-stamped %d records after earlier studies were quarantined", restamped)
    summary = PackSummary(
        name=plan.name,
        dataset_dir=str(plan.dataset_dir),
        studies_seen=len(plan.studies),
        studies_packed=sink.ids.packed,
        shards=len(manifest.shards),
        bytes=manifest.size_bytes,
        files_decoded=dict(counts.files_decoded),
        quarantined=counts.quarantined(),
        redactions=dict(sorted(counts.redactions.items())),
        deid=deid,
        elapsed_s=elapsed,
    )
    _LOG.info(
        "packed %d/%d studies into %d shards (%d bytes); %d inputs quarantined; %.2f s",
        summary.studies_packed,
        summary.studies_seen,
        summary.shards,
        summary.bytes,
        len(counts.quarantine),
        elapsed,
    )
    return summary


def pack_dataset(
    raw_dir: Path,
    dataset_dir: Path,
    config: PackConfig,
    *,
    restart: bool = False,
    on_event: PackEvent | None = None,
) -> PackSummary:
    """Pack every study folder of ``raw_dir`` into a new dataset at ``dataset_dir``.

    Writes ``shard-NNNNN.lmdb`` (``config.shard_samples`` studies each, in
    sorted study order, sample ids ``0..N-1`` over packed studies),
    ``quarantine.jsonl`` (one JSON object per unusable input: ``path`` relative
    to ``raw_dir``, ``kind``, ``reason``, ``exception``) and ``manifest.json``
    (last; its ``pack`` section holds the counts). Bad input never stops the
    run. Raises ``PackError`` when the destination already holds a dataset,
    lies inside ``raw_dir``, or a worker process dies.

    Resumable: if ``dataset_dir`` holds the journal of an unfinished run with
    the same fingerprint, its verified shards are kept and packing goes on
    from there; a journal of other settings raises ``PackError`` unless
    ``restart`` discards it. ``on_event`` is called at each durable step
    (see ``PackEvent``); an exception it raises stops the run there.
    """
    start = time.perf_counter()
    # One line in the dataset's own chain (audit.jsonl), whatever the outcome.
    with dataset_audit(dataset_dir, "pack", **_audit_fields(config, restart)) as audit:
        plan = _plan(Path(raw_dir), Path(dataset_dir), config, restart)
        sink = _write(plan, config, on_event or _no_event)
        summary = _finalize(plan, sink, config, start)
        audit.update(
            studies_seen=summary.studies_seen,
            studies_packed=summary.studies_packed,
            shards=summary.shards,
            bytes=summary.bytes,
            quarantined=sum(summary.quarantined.values()),
            elapsed_s=round(summary.elapsed_s, 3),
        )
    return summary


def _audit_fields(config: PackConfig, restart: bool) -> dict[str, Any]:
    """What the dataset's audit line says of a pack run's settings: the
    de-identification profile and key id, never the key."""
    return {
        "profile": PROFILE,
        "key_id": config.key.key_id,
        "insecure_demo_key": config.key.insecure,
        "date_mode": config.deid.date_mode,
        "restart": restart,
    }
