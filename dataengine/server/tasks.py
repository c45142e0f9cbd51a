"""Work done in the engine's decode worker processes.

One task turns one sample id into the serialized ``Sample`` message that goes
on the wire, so the gRPC front never touches tensor data: it forwards bytes.
On an L0 miss the task reads the sample from the shard file the front names
(the L1 copy or the L2 original) and also returns the prefix (decode +
resample) output so the front can cache it; on an L0 hit the front sends that
blob back and the task only augments and serializes. A ``prefix_only`` task
decodes ahead into L0 and produces no sample.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from dataengine.errors import DataEngineError, NotFoundError
from dataengine.pipeline.augment import augment
from dataengine.pipeline.prefix import run_prefix
from dataengine.pipeline.spec import PipelineSpec
from dataengine.pipeline.stored import decode_prefix, encode_prefix
from dataengine.pipeline.wire import encode_sample
from dataengine.procs import exit_with_parent
from dataengine.shards import ShardReader, decompress_value, parse_record
from dataengine.threads import limit_worker_threads
from dataengine.tiers.disk import ShardLocation
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
_tasks_run = 0


@dataclass(frozen=True)
class SampleTask:
    """One sample to produce. ``shard`` says where to read it when there is
    no ``prefix_blob`` (an L0 hit); ``want_prefix`` asks for the decoded
    prefix back (only worth its IPC when the front caches it);
    ``prefix_only`` decodes ahead into L0: no augmentation, no sample."""

    dataset: str
    sample_id: int
    spec: PipelineSpec
    seed: int
    epoch: int
    shard: ShardLocation | None = None
    prefix_blob: bytes | None = None
    want_prefix: bool = False
    prefix_only: bool = False


@dataclass
class TaskResult:
    """What a worker hands back. ``timings`` are seconds per stage;
    ``read_tier`` ("L1", "L2" or None) and ``read_bytes`` say where the
    stored sample value came from and its size."""

    sample_id: int
    sample_bytes: bytes
    prefix_blob: bytes | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error_kind: str | None = None
    read_tier: str | None = None
    read_bytes: int = 0


def init_worker() -> None:
    """Process initializer: one thread per worker for torch, OpenMP, BLAS
    and the codecs (the pool is the parallelism, ``dataengine/threads.py``);
    exit when the engine process is gone."""
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


def _read_value(shard: ShardLocation, sample_id: int) -> tuple[bytes, str]:
    """The stored value and the tier it came from; an L1 file that vanished
    (another engine evicted it) is read from its L2 fallback instead."""
    try:
        return _reader(str(shard.path), shard.tier == "L1").get(sample_id), shard.tier
    except FileNotFoundError:
        if shard.fallback is None:
            raise NotFoundError(
                f"shard file {shard.path} does not exist", sample_id=sample_id
            ) from None
        _LOG.warning("%s vanished; reading sample %d from L2", shard.path, sample_id)
    try:
        return _reader(str(shard.fallback), False).get(sample_id), "L2"
    except FileNotFoundError:
        raise NotFoundError(
            f"shard file {shard.fallback} does not exist", sample_id=sample_id
        ) from None


def produce_sample(task: SampleTask) -> TaskResult:
    """Produce one serialized ``Sample`` (or, for ``prefix_only``, only the
    prefix blob). Never raises for bad data: the error travels in
    ``Sample.error`` and ``TaskResult.error_kind``."""
    global _tasks_run
    _tasks_run += 1
    if _tasks_run % _SWEEP_EVERY == 0:
        _sweep()
    sid = task.sample_id
    timings: dict[str, float] = {}
    tier: str | None = None
    nbytes = 0
    try:
        fresh_blob: bytes | None = None
        if task.prefix_blob is None:
            if task.shard is None:
                raise NotFoundError("no shard location was given", sample_id=sid)
            t0 = time.perf_counter()
            value, tier = _read_value(task.shard, sid)
            nbytes = len(value)
            t1 = time.perf_counter()
            record = parse_record(decompress_value(value, sample_id=sid), sample_id=sid)
            timings["read"] = t1 - t0
            timings["decompress"] = time.perf_counter() - t1
            prefix = run_prefix(record, task.spec, timings)
            if task.want_prefix or task.prefix_only:
                fresh_blob = encode_prefix(sid, prefix)
            if task.prefix_only:
                return TaskResult(sid, b"", fresh_blob, timings, None, tier, nbytes)
        else:
            prefix = decode_prefix(task.prefix_blob, sid)
        t0 = time.perf_counter()
        arrays = augment(prefix, task.spec, task.seed, task.epoch, sid)
        t1 = time.perf_counter()
        data = encode_sample(sid, arrays, task.spec)  # in the spec's wire dtypes
        timings["augment"] = t1 - t0
        timings["serialize"] = time.perf_counter() - t1
        return TaskResult(sid, data, fresh_blob, timings, None, tier, nbytes)
    except DataEngineError as exc:
        kind, message = exc.kind, str(exc)
    except Exception as exc:  # a bug or an unexpected library failure: report, keep serving
        _LOG.exception("sample %d of %s failed", sid, task.dataset)
        kind, message = "internal", f"{type(exc).__name__}: {exc}"
    if "sample" not in message:
        message = f"sample {sid}: {message}"
    error = pb.Sample(sample_id=sid, error=pb.SampleError(kind=kind, message=message))
    return TaskResult(sid, error.SerializeToString(), None, timings, kind, tier, nbytes)
