"""``prepare_dataset``: a packed dataset in, a prepared view of it out.

The deterministic prefix (``pipeline.prefix.run_prefix``: decode, HU or VOI
values, resample, 12 leads, tokenize, rounding to the stored form) runs once
per study in spawned worker processes, which read the source record
themselves and hand back the prefix value (``compress_blob`` of the prefix
blob). The parent consumes the values in sample order through a bounded
window of futures, so memory stays bounded by the window, and writes one
view shard per source shard (same file name, ids and sample range), then
``manifest.json`` last. A study whose prefix fails (a corrupt record, an
undecodable DICOM) gets a value recording its error kind and message, is
listed in the manifest's ``failed``, and the run goes on.

Crash safety and parts: see ``_journal.py``. Every shard is synced and
renamed into place, then journaled; running the same command again keeps
the journaled shards that verify and prepares the rest, and the finished
view is byte-identical to an uninterrupted run's (values are
deterministic). ``on_event`` lets a caller (a test) act at each of those
points, e.g. kill the process there or pause it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import lmdb

from dataengine.audit import dataset_audit
from dataengine.errors import DataEngineError
from dataengine.pipeline.spec import PipelineSpec
from dataengine.prepared._config import PrepareConfig, PrepareError, PrepareSummary
from dataengine.prepared._journal import (
    FINISH_LOCK_NAME,
    JournalShard,
    PartLock,
    PrepareJournal,
    fingerprint_differences,
    journal_name,
    list_journals,
    lock_name,
    read_journal,
    run_fingerprint,
    shard_problem,
)
from dataengine.prepared._manifest import FailedSample, PreparedManifest, check_view, view_dir
from dataengine.prepared._worker import StudyResult, StudyTask, results_inline, results_pool
from dataengine.progress import Progress
from dataengine.shards import MANIFEST_NAME, Manifest, ShardEntry, ShardWriter, atomic_write_bytes

__all__ = ["PrepareEvent", "prepare_dataset"]

_LOG = logging.getLogger(__name__)

_WINDOW_PER_WORKER = 4

PrepareEvent = Callable[[str, int], None]
"""``on_event(event, n)`` of ``prepare_dataset``, called in the preparing
process: ``("sample", n)`` after the n-th value of this run is added to a
shard, ``("shard", n)`` after the n-th shard of this run is renamed into
place (not yet journaled), ``("journal", n)`` after it is journaled."""


def _no_event(event: str, count: int) -> None:
    return None


# -- the parent side ---------------------------------------------------------


def _tree_cpu_s() -> float:
    """CPU seconds of this process and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _free_space(directory: Path) -> str:
    """How much room is left where ``directory`` lies, for error messages
    (LMDB reports a short write on a full disk as an I/O error)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return "free space unknown"
    return f"{st.f_bavail * st.f_frsize / 1e6:.1f} MB free on its filesystem"


def _write_file(path: Path, data: bytes) -> None:
    """``atomic_write_bytes``, removing its temporary file when it fails."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        Path(f"{path}.tmp").unlink(missing_ok=True)
        raise PrepareError(f"cannot write {path}: {exc} ({_free_space(path.parent)})") from exc


class _Run:
    """The state of one ``prepare_dataset`` call."""

    def __init__(
        self,
        dataset_dir: Path,
        spec: PipelineSpec,
        config: PrepareConfig,
        restart: bool,
        on_event: PrepareEvent = _no_event,
    ) -> None:
        self.start = time.perf_counter()
        self.cpu0 = _tree_cpu_s()
        self.dataset_dir = dataset_dir
        self.spec = spec
        self.config = config
        self.restart = restart
        self.on_event = on_event
        self.source = Manifest.load(dataset_dir)
        self.key = spec.prefix_key()
        self.view = view_dir(dataset_dir, self.key)
        self.locks: list[PartLock] = []
        self.journals: dict[int, PrepareJournal] = {}
        self.kept: dict[int, JournalShard] = {}  # shard id -> verified entry of ours
        self.prepared_now = 0
        self.layout = 1
        self.own: list[int] = [0]

    # -- setup ----------------------------------------------------------------

    def _lock(self, part: tuple[int, int]) -> None:
        self.locks.append(
            PartLock(
                self.view / lock_name(part),
                blocking=False,
                busy=f"part {part[0]}/{part[1]} of {self.view} is being prepared by another "
                "process; wait for it to finish",
            )
        )

    def _choose_layout(self, journals: dict[tuple[int, int], Path]) -> None:
        """Which parts this run does: its ``--part``, or without one every
        part of the layout the existing journals use (one part if none)."""
        if self.config.part is not None:
            self.layout = self.config.part[1]
            self.own = [self.config.part[0]]
            return
        counts = {count for _, count in journals}
        if self.restart or len(counts) != 1:
            self.layout = 1  # none yet, or a mix that is refused (or discarded) below
        else:
            self.layout = counts.pop()
        self.own = list(range(self.layout))

    def _discard_view(self) -> None:
        for path in sorted(self.view.iterdir()):
            if path.is_file() and not path.name.endswith(".lock"):
                _LOG.warning("restart: removing %s", path)
                path.unlink()

    def open(self) -> None:
        """Lock this run's parts, check or discard the journals found, keep
        the journaled shards that verify and remove what crashed runs left."""
        try:
            self.view.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PrepareError(f"cannot create the view folder {self.view}: {exc}") from exc
        journals = list_journals(self.view)
        self._choose_layout(journals)
        fingerprint = run_fingerprint(self.spec, self.source, self.layout)
        for index in self.own:
            self._lock((index, self.layout))
        if self.restart and self.config.part is None:
            for part in journals:  # every other part must be idle before it is discarded
                if part[1] != self.layout:
                    self._lock(part)
            _LOG.warning("restart: discarding everything prepared in %s", self.view)
            self._discard_view()
            journals = {}
        for part, path in journals.items():
            _, old, entries = read_journal(path)
            differs = fingerprint_differences(old, fingerprint)
            ours = part[1] == self.layout and part[0] in self.own
            if differs and self.restart:
                if not ours:
                    self._lock(part)
                _LOG.warning("restart: discarding %s (other settings: %s)", path, differs)
                path.unlink()
            elif differs:
                raise PrepareError(
                    f"{self.view} holds an unfinished prepare run with other settings (they "
                    f"differ in: {', '.join(differs)}; see {path.name}); rerun the original "
                    "command to finish it, or pass --restart (restart=True) to discard it"
                )
            elif ours and self.restart:
                _LOG.warning("restart: discarding %s", path)
                path.unlink()
            elif ours:
                self._keep(entries)
        if self.restart:
            (self.view / MANIFEST_NAME).unlink(missing_ok=True)
        self._remove_leftovers()
        for index in self.own:
            part = (index, self.layout)
            mine = [e for sid, e in sorted(self.kept.items()) if sid % self.layout == index]
            self.journals[index] = PrepareJournal.create(
                self.view / journal_name(part), part, fingerprint, mine
            )
        if self.kept:
            _LOG.warning(
                "resuming an unfinished prepare run in %s: %d shards (%d samples) kept",
                self.view,
                len(self.kept),
                sum(e.shard.num_samples for e in self.kept.values()),
            )

    def _keep(self, entries: Sequence[JournalShard]) -> None:
        by_id = {s.shard_id: s for s in self.source.shards}
        for entry in entries:
            source = by_id.get(entry.shard.shard_id)
            problem = "not a shard of the source" if source is None else ""
            if source is not None:
                problem = shard_problem(self.view, entry, source)
            if problem:
                _LOG.warning(
                    "journaled shard %s: %s; preparing it again", entry.shard.file, problem
                )
            else:
                self.kept[entry.shard.shard_id] = entry

    def _owned(self, shard_id: int) -> bool:
        return shard_id % self.layout in self.own

    def _remove_leftovers(self) -> None:
        """Shard files of this run's parts that no journal keeps were left
        by a crashed run (a rename not yet journaled, a temporary file)."""
        for s in self.source.shards:
            if not self._owned(s.shard_id):
                continue
            final = self.view / s.file
            stale = [Path(f"{final}.tmp"), Path(f"{final}.tmp-lock")]
            if s.shard_id not in self.kept:
                stale.append(final)
            for path in stale:
                if path.exists():
                    _LOG.warning("removing %s left by an earlier, unfinished prepare run", path)
                    path.unlink()

    # -- the work -----------------------------------------------------------

    def todo(self) -> list[ShardEntry]:
        return [
            s for s in self.source.shards if self._owned(s.shard_id) and s.shard_id not in self.kept
        ]

    def run(self, progress: bool) -> None:
        todo = self.todo()
        total = sum(s.num_samples for s in self.source.shards if self._owned(s.shard_id))
        done = sum(e.shard.num_samples for e in self.kept.values())
        spec = self.spec

        def tasks() -> Iterator[StudyTask]:
            for s in todo:
                path = str(self.dataset_dir / s.file)
                for sid in range(s.first_sample_id, s.first_sample_id + s.num_samples):
                    yield StudyTask(path, sid, spec)

        count = sum(s.num_samples for s in todo)
        workers = max(1, min(self.config.workers, count))
        _LOG.info(
            "preparing %d studies in %d shards of %s into %s with %d workers",
            count,
            len(todo),
            self.dataset_dir,
            self.view,
            workers,
        )
        if not todo:
            return
        if workers == 1:
            results = results_inline(tasks())
        else:
            results = results_pool(tasks(), workers, _WINDOW_PER_WORKER * workers)
        meter = Progress("prepare", total, initial=done, enabled=progress)
        try:
            with meter:
                for number, s in enumerate(todo, start=1):
                    entry = self._write_shard(s, results, meter)
                    self.on_event("shard", number)
                    try:
                        self.journals[s.shard_id % self.layout].append(entry)
                    except OSError as exc:
                        (self.view / s.file).unlink(missing_ok=True)
                        raise PrepareError(
                            f"cannot journal {s.file} in {self.view}: {exc}; free space and rerun "
                            "the same command to resume"
                        ) from exc
                    self.kept[s.shard_id] = entry
                    self.on_event("journal", number)
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()  # shuts the pool down (its workers are waited for)

    def _write_shard(
        self,
        s: ShardEntry,
        results: Iterator[StudyResult],
        meter: Progress,
    ) -> JournalShard:
        failed: list[FailedSample] = []
        cpu = 0.0
        writer: ShardWriter | None = None
        try:
            writer = ShardWriter(self.view, s.shard_id, s.first_sample_id)
            for sid in range(s.first_sample_id, s.first_sample_id + s.num_samples):
                result = next(results)
                if result.sample_id != sid:  # the task stream and this loop disagree: a bug
                    raise PrepareError(f"got sample {result.sample_id}, expected {sid}")
                if result.error_kind is not None:
                    failed.append(FailedSample(sid, result.error_kind, result.error_message))
                writer.add(sid, result.value)
                cpu += result.cpu_s
                self.prepared_now += 1
                meter.advance()
                self.on_event("sample", self.prepared_now)
            entry = writer.close()
        except (OSError, lmdb.Error) as exc:
            if writer is not None:
                with contextlib.suppress(OSError, lmdb.Error):
                    writer.abort()
            final = self.view / s.file
            with contextlib.suppress(OSError):
                Path(f"{final}.tmp").unlink(missing_ok=True)
                Path(f"{final}.tmp-lock").unlink(missing_ok=True)
                final.unlink(missing_ok=True)  # renamed but not journaled: not kept either way
            raise PrepareError(
                f"writing {s.file} (samples {s.first_sample_id}.."
                f"{s.first_sample_id + s.num_samples - 1}) to {final} failed: {exc} "
                f"({_free_space(self.view)}); its temporary file was removed. Free space (or "
                "fix the folder) and rerun the same command to resume"
            ) from exc
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        return JournalShard(entry, tuple(failed), s.size_bytes, cpu)

    # -- the end ------------------------------------------------------------

    def finish(self) -> PrepareSummary:
        """Write manifest.json if every shard is journaled and verifies."""
        with PartLock(self.view / FINISH_LOCK_NAME, blocking=True, busy=""):
            if (self.view / MANIFEST_NAME).exists():  # another part finished the view
                view = PreparedManifest.load(self.view)
                return self._summary("prepared", view.shards, view.failed)
            fingerprint = run_fingerprint(self.spec, self.source, self.layout)
            entries: dict[int, JournalShard] = dict(self.kept)
            by_id = {s.shard_id: s for s in self.source.shards}
            journals = list_journals(self.view)
            for part, path in journals.items():
                if part[1] != self.layout or part[0] in self.own:
                    continue  # ours are in self.kept; others were refused or discarded
                _, old, lines = read_journal(path)
                if fingerprint_differences(old, fingerprint):
                    _LOG.warning("%s: other settings; not used", path)
                    continue
                for entry in lines:
                    source = by_id.get(entry.shard.shard_id)
                    if source is None or entry.shard.shard_id in entries:
                        continue
                    problem = shard_problem(self.view, entry, source)
                    if problem:
                        _LOG.warning(
                            "%s: shard %s: %s; its part must prepare it again",
                            path.name,
                            entry.shard.file,
                            problem,
                        )
                    else:
                        entries[entry.shard.shard_id] = entry
            missing = [s for s in self.source.shards if s.shard_id not in entries]
            shards = tuple(entries[s].shard for s in sorted(entries))
            failed = tuple(f for s in sorted(entries) for f in entries[s].failed)
            if missing:
                return self._summary("part_done", shards, failed)
            elapsed = time.perf_counter() - self.start
            cpu = _tree_cpu_s() - self.cpu0
            source_bytes = sum(e.source_bytes for e in entries.values())
            kinds = Counter(f.kind for f in failed)
            manifest = PreparedManifest(
                dataset=self.source.name,
                source_fingerprint=fingerprint["source_fingerprint"],
                prefix_key=self.key,
                prefix=self.spec.prefix_fields(),
                created_utc=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                shards=shards,
                failed=failed,
                summary={
                    "samples": sum(s.num_samples for s in shards),
                    "failed": dict(sorted(kinds.items())),
                    "bytes": sum(s.size_bytes for s in shards),
                    "source_bytes": source_bytes,
                    "worker_cpu_s": round(sum(e.worker_cpu_s for e in entries.values()), 3),
                    "parts": self.layout,
                    "workers": self.config.workers,
                    "elapsed_s": round(elapsed, 3),
                    "cpu_s": round(cpu, 3),
                },
            )
            _write_file(self.view / MANIFEST_NAME, manifest.to_json().encode("utf-8"))
            for path in journals.values():
                path.unlink(missing_ok=True)
            for path in self.view.glob("prepare.part-*.lock"):
                path.unlink(missing_ok=True)
            (self.view / FINISH_LOCK_NAME).unlink(missing_ok=True)
            return self._summary("prepared", shards, failed)

    def _summary(
        self,
        status: str,
        shards: Sequence[ShardEntry],
        failed: Sequence[FailedSample],
    ) -> PrepareSummary:
        ids = {s.shard_id for s in shards}
        return PrepareSummary(
            status=status,
            dataset=self.source.name,
            view_dir=str(self.view),
            prefix_key=self.key,
            samples=sum(s.num_samples for s in shards),
            prepared_now=self.prepared_now,
            shards=len(shards),
            shards_total=len(self.source.shards),
            bytes=sum(s.size_bytes for s in shards),
            source_bytes=sum(s.size_bytes for s in self.source.shards if s.shard_id in ids),
            failed=dict(sorted(Counter(f.kind for f in failed).items())),
            elapsed_s=time.perf_counter() - self.start,
            cpu_s=_tree_cpu_s() - self.cpu0,
            workers=self.config.workers,
            part=self.config.part,
        )

    def close(self) -> None:
        for lock in self.locks:
            lock.release()
        self.locks.clear()


def prepare_dataset(
    dataset_dir: Path,
    spec: PipelineSpec,
    config: PrepareConfig | None = None,
    *,
    restart: bool = False,
    progress: bool = True,
    on_event: PrepareEvent | None = None,
) -> PrepareSummary:
    """Prepare the view of the packed dataset at ``dataset_dir`` for the
    prefix of ``spec``: ``DATASET_DIR/prepared/<spec.prefix_key()>/``.

    A finished view that ``check_view`` accepts is left as it is (status
    "already_prepared"); one it refuses is a ``PrepareError`` unless
    ``restart``. With ``config.part`` only that part's shards are prepared;
    whichever run finds every shard done writes ``manifest.json``.
    Resumable (see the module docstring); other settings journaled in the
    view raise ``PrepareError`` naming the fields that differ, unless
    ``restart`` discards them. A write that fails (disk full) raises
    ``PrepareError`` naming the shard and path, after removing its
    temporary file. ``progress`` shows studies done, rate and ETA on stderr
    (a log line every 10 s when stderr is not a terminal). ``on_event`` is
    called at each durable step (see ``PrepareEvent``); an exception it
    raises stops the run there.
    """
    config = config or PrepareConfig()
    # One line in the dataset's own chain (audit.jsonl), whatever the outcome.
    with dataset_audit(
        dataset_dir, "prepare", prefix_key=spec.prefix_key(), part=config.part, restart=restart
    ) as audit:
        summary = _prepare(Path(dataset_dir), spec, config, restart, progress, on_event)
        audit.update(
            status=summary.status,
            samples=summary.samples,
            prepared_now=summary.prepared_now,
            failed=sum(summary.failed.values()),
            shards=summary.shards,
            shards_total=summary.shards_total,
            elapsed_s=round(summary.elapsed_s, 3),
        )
    return summary


def _prepare(
    dataset_dir: Path,
    spec: PipelineSpec,
    config: PrepareConfig,
    restart: bool,
    progress: bool,
    on_event: PrepareEvent | None,
) -> PrepareSummary:
    run = _Run(dataset_dir, spec, config, restart, on_event or _no_event)
    if (run.view / MANIFEST_NAME).exists() and not restart:
        try:
            view = check_view(run.view, run.source)
        except DataEngineError as exc:
            raise PrepareError(
                f"{run.view} holds a finished view that may not be served ({exc}); rerun with "
                "--restart (restart=True) to prepare it again"
            ) from exc
        _LOG.info("%s is already prepared; nothing to do", run.view)
        return run._summary("already_prepared", view.shards, view.failed)
    try:
        run.open()
        run.run(progress)
        summary = run.finish()
    finally:
        run.close()
    _LOG.info(
        "prepare (%s): %d samples (%d failed) in %d of %d shards, %d bytes; %.2f s",
        summary.status,
        summary.samples,
        sum(summary.failed.values()),
        summary.shards,
        summary.shards_total,
        summary.bytes,
        summary.elapsed_s,
    )
    return summary
