"""``pack_dataset``: raw study folders in, an immutable dataset out.

Studies are packed in worker processes (spawned, never forked) and consumed
in sorted study order through a bounded window of futures, so memory stays
bounded by the window, not the corpus. The parent writes shards in order,
then ``quarantine.jsonl``, then ``manifest.json`` last: a dataset without a
manifest is not a dataset.

Crash safety: every shard is synced and renamed into place, then journaled
(``pack-journal.jsonl``, see ``_journal.py``). Running the same command again
after a crash keeps the journaled shards that verify, restores their counters
and quarantine entries, and packs on from the first study they do not cover;
the finished dataset equals an uninterrupted run's. ``TEST_KILL_ENV`` is a
test hook that SIGKILLs the packer at a chosen point.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import os
import signal
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from dataengine.deid.dicom import PROFILE
from dataengine.errors import ConfigError, PackError
from dataengine.pack._config import PackConfig, PackSummary, QuarantineEntry
from dataengine.pack._discover import discover_sources
from dataengine.pack._journal import (
    JOURNAL_NAME,
    JournalShard,
    PackJournal,
    fingerprint_differences,
    read_journal,
    run_fingerprint,
    verified_prefix,
)
from dataengine.pack._study import StudyResult, StudyTask, pack_study
from dataengine.procs import exit_with_parent
from dataengine.progress import Progress
from dataengine.shards import (
    MANIFEST_NAME,
    Manifest,
    ShardEntry,
    ShardWriter,
    atomic_write_bytes,
    decode_record,
    encode_record,
)

__all__ = ["JOURNAL_NAME", "QUARANTINE_NAME", "TEST_KILL_ENV", "pack_dataset"]

_LOG = logging.getLogger(__name__)

QUARANTINE_NAME = "quarantine.jsonl"
_WINDOW_PER_WORKER = 4
# Test hook: "sample:N" (after the N-th sample is added to a shard), "shard:N"
# (after the N-th shard file is renamed into place, before it is journaled) or
# "journal:N" (after the N-th shard is journaled) SIGKILLs the packing process.
TEST_KILL_ENV = "MEDSTREAM_PACK_TEST_KILL_AT"
_LEFTOVER_PATTERNS = ("*.tmp", "*.tmp-lock", "shard-*.lmdb", QUARANTINE_NAME)


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
            sum(len(e.studies) for e in done),
        )
    return journal, done


class _KillSwitch:
    """The ``TEST_KILL_ENV`` hook (inactive unless the variable is set)."""

    def __init__(self) -> None:
        spec = os.environ.get(TEST_KILL_ENV, "")
        self.point: tuple[str, int] | None = None
        if spec:
            event, _, count = spec.partition(":")
            if event not in ("sample", "shard", "journal") or not count.isdigit():
                raise ConfigError(
                    TEST_KILL_ENV, f"must be 'sample:N', 'shard:N' or 'journal:N', got {spec!r}"
                )
            self.point = (event, int(count))

    def at(self, event: str, count: int) -> None:
        if self.point == (event, count):
            _LOG.warning("%s=%s%d: killing this process", TEST_KILL_ENV, event + ":", count)
            os.kill(os.getpid(), signal.SIGKILL)


class _Pending:
    """What the shard being filled covers: the studies consumed since the last
    shard closed, with their quarantine entries and counters."""

    def __init__(self) -> None:
        self.studies: list[str] = []
        self.quarantine: list[QuarantineEntry] = []
        self.files_decoded: Counter[str] = Counter()
        self.redactions: Counter[str] = Counter()
        self.deid: Counter[str] = Counter()

    def add(self, result: StudyResult) -> None:
        self.studies.append(result.study)
        self.quarantine.extend(result.quarantine)
        self.files_decoded.update(result.files_decoded)
        if result.value is not None:
            self.redactions.update(result.redactions)
            self.deid.update(result.deid)

    def seal(self, shard: ShardEntry) -> JournalShard:
        entry = JournalShard(
            shard=shard,
            studies=tuple(self.studies),
            quarantine=tuple(self.quarantine),
            files_decoded=dict(self.files_decoded),
            redactions=dict(self.redactions),
            deid=dict(self.deid),
        )
        self.studies, self.quarantine = [], []
        self.files_decoded, self.redactions, self.deid = Counter(), Counter(), Counter()
        return entry


def _results_inline(tasks: Iterator[StudyTask]) -> Iterator[StudyResult]:
    for task in tasks:
        yield pack_study(task)


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


def _results_pool(tasks: Iterator[StudyTask], workers: int, window: int) -> Iterator[StudyResult]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=exit_with_parent
    ) as pool:
        pending: deque[tuple[StudyTask, Future[StudyResult]]] = deque()
        for task in tasks:
            pending.append((task, pool.submit(pack_study, task)))
            if len(pending) >= window:
                yield _collect(*pending.popleft())
        while pending:
            yield _collect(*pending.popleft())


def _collect(task: StudyTask, future: Future[StudyResult]) -> StudyResult:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise PackError(
            f"a pack worker died (crash or out of memory) while packing around study "
            f"{task.study!r}: {exc}"
        ) from exc
    except Exception as exc:  # pack_study catches its own; this is transport
        _LOG.error("study %s failed in its worker", task.study, exc_info=exc)
        return StudyResult(
            study=task.study,
            sample_id=task.sample_id,
            value=None,
            quarantine=[QuarantineEntry(task.study, "internal", str(exc), type(exc).__name__)],
        )


def pack_dataset(
    raw_dir: Path, dataset_dir: Path, config: PackConfig, *, restart: bool = False
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
    ``restart`` discards it.
    """
    start = time.perf_counter()
    raw_dir, dataset_dir = Path(raw_dir), Path(dataset_dir)
    _prepare_destination(raw_dir, dataset_dir)
    name = config.name or dataset_dir.resolve().name
    discovery = discover_sources(raw_dir, config.index_file)  # folders, or the index file
    sources = {s.study_id: s for s in discovery.sources}
    studies = [s.study_id for s in discovery.sources]
    _LOG.info(
        "packing %d studies from %s into %s with %d workers",
        len(studies),
        raw_dir,
        dataset_dir,
        config.workers,
    )
    kill = _KillSwitch()
    journal, done = _open_journal(
        dataset_dir, run_fingerprint(raw_dir, studies, config), studies, restart
    )
    covered = sum(len(e.studies) for e in done)
    ids = _Ids(start=sum(e.shard.num_samples for e in done))

    def tasks() -> Iterator[StudyTask]:
        for study in studies[covered:]:
            yield StudyTask(
                raw_dir=str(raw_dir),
                study=study,
                sample_id=ids.next_guess(),
                key=config.key,
                max_file_bytes=config.max_file_bytes,
                policy=config.deid,
                source=sources[study],
                report_field=config.report_json_field,
            )

    if config.workers == 1:
        results = _results_inline(tasks())
    else:
        results = _results_pool(tasks(), config.workers, _WINDOW_PER_WORKER * config.workers)

    shards: list[ShardEntry] = [e.shard for e in done]
    quarantine: list[QuarantineEntry] = [*discovery.quarantine]  # bad index lines first
    quarantine += [q for e in done for q in e.quarantine]
    files_decoded: Counter[str] = Counter({"dicom": 0, "edf": 0, "report": 0})
    redactions: Counter[str] = Counter()
    deid: Counter[str] = Counter()
    for e in done:
        files_decoded.update(e.files_decoded)
        redactions.update(e.redactions)
        deid.update(e.deid)
    pending = _Pending()
    writer: ShardWriter | None = None
    meter = Progress("pack", len(studies), initial=covered)

    def close_shard(full: ShardWriter) -> None:
        shards.append(full.close())
        kill.at("shard", len(shards))
        journal.append(pending.seal(shards[-1]))
        kill.at("journal", len(shards))

    try:
        for result in results:
            meter.advance()
            pending.add(result)
            quarantine.extend(result.quarantine)
            files_decoded.update(result.files_decoded)
            if result.value is None:
                ids.failed_known += 1
                continue
            redactions.update(result.redactions)
            deid.update(result.deid)
            value = result.value
            if result.sample_id != ids.packed:
                record = decode_record(value)
                record.sample_id = ids.packed
                value = encode_record(record)
                ids.restamped += 1
            if writer is None:
                writer = ShardWriter(dataset_dir, len(shards), ids.packed)
            writer.add(ids.packed, value)
            ids.packed += 1
            kill.at("sample", ids.packed)
            if writer.num_samples >= config.shard_samples:
                close_shard(writer)
                writer = None
        if writer is not None:
            close_shard(writer)
            writer = None
    except BaseException:
        if writer is not None:
            writer.abort()
        meter.close(stopped=True)
        raise
    meter.close()

    quarantined = Counter(e.kind for e in quarantine)
    lines = "".join(json.dumps(e.to_json_dict(), sort_keys=True) + "\n" for e in quarantine)
    atomic_write_bytes(dataset_dir / QUARANTINE_NAME, lines.encode("utf-8"))
    deid_section: dict[str, Any] = {
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
    pack_section: dict[str, Any] = {
        "studies_seen": len(studies),
        "studies_packed": ids.packed,
        "files_decoded": dict(files_decoded),
        "quarantined": dict(sorted(quarantined.items())),
        "quarantine_file": QUARANTINE_NAME,
        "redactions": dict(sorted(redactions.items())),
        "deid": deid_section,
        "shard_samples": config.shard_samples,
    }
    manifest = Manifest(
        name=name,
        created_utc=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        shards=tuple(shards),
        pack=pack_section,
    )
    atomic_write_bytes(dataset_dir / MANIFEST_NAME, manifest.to_json().encode("utf-8"))
    journal.remove()  # the manifest now says everything it said
    elapsed = time.perf_counter() - start
    if ids.restamped:
        _LOG.info("re-stamped %d records after earlier studies were quarantined", ids.restamped)
    summary = PackSummary(
        name=name,
        dataset_dir=str(dataset_dir),
        studies_seen=len(studies),
        studies_packed=ids.packed,
        shards=len(shards),
        bytes=manifest.size_bytes,
        files_decoded=dict(files_decoded),
        quarantined=dict(sorted(quarantined.items())),
        redactions=dict(sorted(redactions.items())),
        deid=deid_section,
        elapsed_s=elapsed,
    )
    _LOG.info(
        "packed %d/%d studies into %d shards (%d bytes); %d inputs quarantined; %.2f s",
        summary.studies_packed,
        summary.studies_seen,
        summary.shards,
        summary.bytes,
        len(quarantine),
        elapsed,
    )
    return summary
