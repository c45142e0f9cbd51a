"""Work done in the engine's decode worker processes.

One task turns one sample id into the serialized ``Sample`` message that goes
on the wire, so the gRPC front never touches tensor data: it forwards bytes.

The task finds the sample's prefix where the front says (``tiers.Fetch``,
first found wins): the L0 blob the front sends; a value in a prepared view's
shard; an entry of the decode cache; else the source shard (L1 copy or L2
original) and a fresh decode, whose prefix value the worker itself writes
to the decode cache (no big IPC). A view value or a cache entry that fails
its checksum, does not parse or holds another sample is never served: the
task decodes from the source instead (a bad cache entry is deleted) and says
why. A stored failure (``StoredSampleError``) is served as the same
per-sample error a fresh decode gives. The prefix blob goes back to the
front when it caches it in L0 (``want_prefix``); a ``prefix_only`` task
produces the prefix ahead into L0 and no sample.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dataengine.errors import DataEngineError, DataLossError, DecodeError, NotFoundError
from dataengine.pipeline.augment import augment
from dataengine.pipeline.prefix import run_prefix
from dataengine.pipeline.spec import PipelineSpec
from dataengine.pipeline.stored import (
    compress_blob,
    decode_prefix,
    decompress_blob,
    encode_prefix,
    encode_prefix_error,
)
from dataengine.pipeline.wire import encode_sample, sample_parts
from dataengine.procs import exit_with_parent
from dataengine.shards import ShardReader, decompress_value, parse_record
from dataengine.shm import Segment, SharedMemoryError
from dataengine.tensors import write_parts
from dataengine.threads import limit_worker_threads
from dataengine.tiers.decoded import read_entry, write_entry
from dataengine.tiers.disk import ShardLocation
from dataengine.tiers.stack import DECODE_CACHE, DECODED, PREPARED, RAM, ReadReport
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["SampleTask", "TaskResult", "close_readers", "init_worker", "produce_sample"]

_LOG = logging.getLogger(__name__)
# Open shard files per worker, by path. For L1 files the (device, inode) the
# reader maps tells a refilled file (same path, new inode) from the old one;
# L2 files are immutable and never re-checked (a stat per read would load a
# shared filesystem's metadata server), so their identity is None.
_READERS: OrderedDict[str, tuple[tuple[int, int] | None, ShardReader]] = OrderedDict()
_MAX_READERS = 32
_SWEEP_EVERY = 64  # tasks between checks that open L1 files still exist
_SEGMENTS: dict[str, Segment] = {}  # shared-memory segments this worker wrote to
_tasks_run = 0
_test_delay_s = 0.0


@dataclass(frozen=True)
class SampleTask:
    """One sample to produce. Where its prefix is, first found wins (see
    ``tiers.Fetch``): ``prefix_blob`` (an L0 hit), ``prepared`` (a view
    shard), ``cached`` (a decode cache entry), else a fresh decode from
    ``shard``; ``cache_to`` is where a fresh decode's prefix value goes.
    ``want_prefix`` asks for the prefix blob back (only worth its IPC when
    the front caches it); ``prefix_only`` produces the prefix ahead into L0:
    no augmentation, no sample. ``shared`` is where to write the sample
    instead of returning it: a leased segment's name, the slot's start
    offset and its capacity in bytes (``server/shm.py``)."""

    dataset: str
    sample_id: int
    spec: PipelineSpec
    seed: int
    epoch: int
    shard: ShardLocation | None = None
    prefix_blob: bytes | None = None
    want_prefix: bool = False
    prefix_only: bool = False
    prepared: ShardLocation | None = None
    cached: Path | None = None
    cache_to: Path | None = None
    shared: tuple[str, int, int] | None = None
    submitted: float = 0.0  # time.monotonic() when the front queued it (WorkerPool.submit)


@dataclass
class TaskResult:
    """What a worker hands back. ``timings`` are seconds per stage;
    ``report`` says which source served the prefix and what was read and
    written in the tiers (``read_tier`` / ``read_bytes``: the last shard
    read's tier, "L1", "L2" or None, and the bytes of all shard reads).
    A sample written into shared memory has ``shared_size`` bytes there and
    empty ``sample_bytes``. ``submitted``, ``started`` and ``finished`` are
    ``time.monotonic()`` (one clock for all processes of a host): queued by
    the front, begun and ended by the worker; ``cpu`` is the worker's CPU
    seconds by stage (``server/usage.py``'s ``CPU_STAGES``)."""

    sample_id: int
    sample_bytes: bytes
    prefix_blob: bytes | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error_kind: str | None = None
    report: ReadReport = field(default_factory=ReadReport)
    shared_size: int = 0  # bytes written into the task's shared slot (0: none)
    submitted: float = 0.0
    started: float = 0.0
    finished: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def read_tier(self) -> str | None:
        return self.report.reads[-1][0] if self.report.reads else None

    @property
    def read_bytes(self) -> int:
        return sum(n for _, n in self.report.reads)


def init_worker(test_delay_s: float = 0.0) -> None:
    """Process initializer: one thread per worker for torch, OpenMP, BLAS
    and the codecs (the pool is the parallelism, ``dataengine/threads.py``);
    exit when the engine process is gone. ``test_delay_s``: each sample
    task sleeps that long first (``serve --test-task-delay``, test only)."""
    global _test_delay_s
    _test_delay_s = test_delay_s
    limit_worker_threads()
    # Ctrl-C in a terminal reaches the whole process group: the engine drains
    # and stops its workers itself, so they must not die mid-task first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()


def close_readers() -> None:
    """Close every shard this process has open (LMDB allows one environment
    per file per process, so a caller that runs tasks in-process must close
    them before opening the same shards another way)."""
    for path in list(_READERS):
        _close(path)


def _close(path: str) -> None:
    _, reader = _READERS.pop(path)
    reader.close()


def _sweep() -> None:
    """Close readers whose L1 file was evicted or replaced, so an unlinked
    file's disk space is given back."""
    for path, (ident, _) in list(_READERS.items()):
        if ident is None:
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            _close(path)
            continue
        if (st.st_dev, st.st_ino) != ident:
            _close(path)


def _reader(path: str, local: bool) -> ShardReader:
    """An open reader of the file at ``path``; for a ``local`` (L1) file, of
    the file there now (FileNotFoundError if none)."""
    cached = _READERS.get(path)
    ident = None
    if local:
        st = os.stat(path)
        ident = (st.st_dev, st.st_ino)
    if cached is not None and cached[0] == ident:
        _READERS.move_to_end(path)
        return cached[1]
    if cached is not None:
        _close(path)
    if not local and not os.path.isfile(path):
        raise FileNotFoundError(path)
    reader = ShardReader(Path(path))
    _READERS[path] = (ident, reader)
    while len(_READERS) > _MAX_READERS:
        _close(next(iter(_READERS)))
    return reader


def _read_value(shard: ShardLocation, sample_id: int, report: ReadReport) -> bytes:
    """The stored value of ``sample_id`` in ``shard`` (the read booked in
    ``report``); an L1 file that vanished (another engine evicted it) is read
    from its L2 fallback instead, or, without one, ``NotFoundError``."""
    try:
        value = _reader(str(shard.path), shard.tier == "L1").get(sample_id)
        report.reads.append((shard.tier, len(value)))
        return value
    except FileNotFoundError:
        report.l1_vanished = shard.tier == "L1"
        if shard.fallback is None:
            raise NotFoundError(
                f"shard file {shard.path} does not exist", sample_id=sample_id
            ) from None
        _LOG.warning("%s vanished; reading sample %d from L2", shard.path, sample_id)
    try:
        value = _reader(str(shard.fallback), False).get(sample_id)
    except FileNotFoundError:
        raise NotFoundError(
            f"shard file {shard.fallback} does not exist", sample_id=sample_id
        ) from None
    report.reads.append(("L2", len(value)))
    return value


# What makes a stored prefix unusable (never served; decoded from the source
# instead). A recorded failure (StoredSampleError) is not among them: it is
# served as the per-sample error it records.
_UNUSABLE = (DataLossError, DecodeError, NotFoundError, OSError)
Prefix = tuple[dict[str, np.ndarray], bytes | None]


class _Clock:
    """A task's wall seconds (``timings``, perf_counter) and worker CPU
    seconds (process_time) by stage; a mark is ``now()``'s pair."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.timings: dict[str, float] = {}
        self._cpu: dict[str, float] = {}
        self._cpu0 = time.process_time()

    @staticmethod
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def add(self, stage: str, t0: tuple[float, float], t1: tuple[float, float]) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + t1[0] - t0[0]
        self.add_cpu(stage, t0, t1)

    def add_cpu(self, stage: str, t0: tuple[float, float], t1: tuple[float, float]) -> None:
        self._cpu[stage] = self._cpu.get(stage, 0.0) + t1[1] - t0[1]

    def cpu_by_stage(self) -> dict[str, float]:
        """CPU seconds by stage; "other" is the task's CPU outside them."""
        total = time.process_time() - self._cpu0
        cpu = dict(self._cpu)
        cpu["other"] = max(0.0, total - sum(cpu.values()))
        return cpu


def _message(sample_id: int, exc: Exception) -> str:
    """An error's text as ``Sample.error.message`` carries it."""
    message = str(exc)
    return message if "sample" in message else f"sample {sample_id}: {message}"


def _from_prepared(
    task: SampleTask, where: ShardLocation, report: ReadReport, clock: _Clock
) -> Prefix | None:
    """The prefix from the view shard at ``where``; None when unusable."""
    sid = task.sample_id
    t0 = clock.now()
    try:
        value = _read_value(where, sid, report)
        t1 = clock.now()
        blob = decompress_blob(value, sid)
        report.source = PREPARED
        prefix = decode_prefix(blob, sid)
    except _UNUSABLE as exc:
        report.fallback = f"prepared value in {where.path}: {exc}"
        return None
    clock.add("read", t0, t1)
    clock.add("decompress", t1, clock.now())
    return prefix, blob


def _from_cache(task: SampleTask, path: Path, report: ReadReport, clock: _Clock) -> Prefix | None:
    """The prefix from the decode cache entry at ``path``; None when it is
    gone or unusable (then it is deleted, and the front told)."""
    sid = task.sample_id
    t0 = clock.now()
    try:
        blob, size = read_entry(path, sid)
        report.source = DECODE_CACHE
        prefix = decode_prefix(blob, sid)
    except FileNotFoundError:  # evicted by another engine sharing the directory
        report.cache_dropped = True
        return None
    except _UNUSABLE as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        report.cache_dropped = True
        report.fallback = f"decode cache entry {path} deleted: {exc}"
        return None
    report.cache_read_bytes = size
    clock.add("read", t0, clock.now())  # read, decompress and parse
    return prefix, blob


def _write_cache(task: SampleTask, report: ReadReport, blob: bytes) -> None:
    """Write a freshly decoded prefix to the decode cache, if it is on; a
    failed write (disk full...) is reported, never raised."""
    if task.cache_to is None:
        return
    t0 = time.perf_counter()
    try:
        value = compress_blob(blob)
        write_entry(task.cache_to, value)
    except OSError as exc:
        report.cache_error = f"{type(exc).__name__}: {exc}"
        return
    report.cache_written = len(value)
    report.cache_seconds = time.perf_counter() - t0


def _decode(task: SampleTask, report: ReadReport, clock: _Clock) -> Prefix:
    """The prefix decoded from the source shard; its blob (when the front or
    the decode cache wants it) is written to the decode cache. A study that
    fails to decode is cached as its error, and the error raised."""
    report.source = DECODED
    sid = task.sample_id
    if task.shard is None:
        raise NotFoundError("no shard location was given", sample_id=sid)
    t0 = clock.now()
    value = _read_value(task.shard, sid, report)
    t1 = clock.now()
    record = parse_record(decompress_value(value, sample_id=sid), sample_id=sid)
    t2 = clock.now()
    clock.add("read", t0, t1)
    clock.add("decompress", t1, t2)
    try:
        prefix = run_prefix(record, task.spec, clock.timings)
        clock.add_cpu("decode", t2, clock.now())  # run_prefix books its wall time
    except DataEngineError as exc:
        if exc.kind != "internal":  # a property of the study, not a bug
            _write_cache(task, report, encode_prefix_error(sid, exc.kind, _message(sid, exc)))
        raise
    blob = None
    if task.want_prefix or task.prefix_only or task.cache_to is not None:
        blob = encode_prefix(sid, prefix)
        _write_cache(task, report, blob)
    return prefix, blob


def _find_prefix(task: SampleTask, report: ReadReport, clock: _Clock) -> Prefix:
    """The sample's prefix arrays and blob from the first source that has it."""
    if task.prefix_blob is not None:
        report.source = RAM
        return decode_prefix(task.prefix_blob, task.sample_id), task.prefix_blob
    if task.prepared is not None:
        found = _from_prepared(task, task.prepared, report, clock)
        if found is not None:
            return found
    if task.cached is not None:
        found = _from_cache(task, task.cached, report, clock)
        if found is not None:
            return found
    return _decode(task, report, clock)


def _shared_segment(name: str) -> Segment:
    """The worker's mapping of segment ``name`` (opened once; mappings of
    segments whose name is gone are dropped first)."""
    for gone in [n for n, seg in _SEGMENTS.items() if not seg.linked]:
        _SEGMENTS.pop(gone).close()
    segment = _SEGMENTS.get(name)
    if segment is None:
        segment = _SEGMENTS[name] = Segment.open(name)
    return segment


def _write_shared(
    target: tuple[str, int, int], sid: int, arrays: dict[str, np.ndarray], spec: PipelineSpec
) -> int:
    """Serialize the sample straight into its shared slot; return the bytes
    written, or 0 when it cannot be (the segment is gone or truncated, or the
    sample does not fit): the sample then goes over TCP."""
    name, start, capacity = target
    try:
        segment = _shared_segment(name)
        segment.check(start + capacity)
        with memoryview(segment.buffer) as whole, whole[start : start + capacity] as slot:
            return write_parts(sample_parts(sid, arrays, spec), slot)
    except (SharedMemoryError, ValueError) as exc:
        _LOG.warning("sample %d: not written to shared memory (%s); sent over TCP", sid, exc)
        return 0


def produce_sample(task: SampleTask) -> TaskResult:
    """Produce one serialized ``Sample`` (or, for ``prefix_only``, only the
    prefix blob). Never raises for bad data: the error travels in
    ``Sample.error`` and ``TaskResult.error_kind``."""
    global _tasks_run
    _tasks_run += 1
    if _tasks_run % _SWEEP_EVERY == 0:
        _sweep()
    clock = _Clock()
    if _test_delay_s and not task.prefix_only:
        time.sleep(_test_delay_s)  # test only: a throttled worker, no CPU spent
    result = _produce(task, clock)
    result.submitted, result.started = task.submitted, clock.started
    result.finished, result.cpu = time.monotonic(), clock.cpu_by_stage()
    return result


def _produce(task: SampleTask, clock: _Clock) -> TaskResult:
    sid = task.sample_id
    timings = clock.timings
    report = ReadReport()
    try:
        prefix, blob = _find_prefix(task, report, clock)
        wanted = task.want_prefix or task.prefix_only
        back = blob if wanted and report.source != RAM else None
        if task.prefix_only:
            return TaskResult(sid, b"", back, timings, report=report)
        t0 = clock.now()
        arrays = augment(prefix, task.spec, task.seed, task.epoch, sid)
        t1 = clock.now()
        clock.add("augment", t0, t1)
        size = 0 if task.shared is None else _write_shared(task.shared, sid, arrays, task.spec)
        data = b"" if size else encode_sample(sid, arrays, task.spec)  # the spec's wire dtypes
        clock.add("serialize", t1, clock.now())
        return TaskResult(sid, data, back, timings, report=report, shared_size=size)
    except DataEngineError as exc:
        kind, message = exc.kind, _message(sid, exc)
    except Exception as exc:  # a bug or an unexpected library failure: report, keep serving
        _LOG.exception("sample %d of %s failed", sid, task.dataset)
        kind, message = "internal", _message(sid, RuntimeError(f"{type(exc).__name__}: {exc}"))
    error = pb.Sample(sample_id=sid, error=pb.SampleError(kind=kind, message=message))
    return TaskResult(sid, error.SerializeToString(), None, timings, kind, report=report)
