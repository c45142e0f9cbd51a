"""The worker side of ``prepare``: one study in, its prefix value out.

Workers are limited to one core each (the pool is the parallelism). Each
reads its study from the source shard itself (an LMDB reader per shard per
process), so the parent ships only sample ids and receives compressed
values. ``results_inline`` runs the same in the calling process;
``results_pool`` keeps a bounded window of futures and yields the results
in submission order.

Start-up CPU: importing the decode code (torch above all) costs about 2 CPU
seconds per process, as much as decoding a dozen studies. So the parent
never imports it (``prepare_study`` imports ``run_prefix`` when it first
runs), and the workers come from a fork server (``multiprocessing``'s
"forkserver" context): a fresh single-threaded process, started by exec
with the one-thread environment (``threads.worker_environment``), that
imports the decode code once and forks each worker from there. No worker
is forked from the parent, whose threads and state a fork would copy.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.forkserver as forkserver
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from dataengine.errors import DataEngineError
from dataengine.pipeline.spec import PipelineSpec
from dataengine.pipeline.stored import compress_blob, encode_prefix, encode_prefix_error
from dataengine.prepared._config import PrepareError
from dataengine.procs import exit_with_parent
from dataengine.shards import ShardReader, decompress_value, parse_record
from dataengine.threads import limit_worker_threads
from dataengine.workers import in_order, one_core_pool

__all__ = [
    "StudyResult",
    "StudyTask",
    "init_worker",
    "prepare_study",
    "results_inline",
    "results_pool",
]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyTask:
    """One study to prepare: its sample id and the source shard holding it."""

    shard_path: str
    sample_id: int
    spec: PipelineSpec


@dataclass(frozen=True)
class StudyResult:
    """The prefix value of one study (a recorded error when ``error_kind``
    is set) and the CPU seconds its worker spent on it."""

    sample_id: int
    value: bytes
    error_kind: str | None
    error_message: str
    cpu_s: float


_READERS: dict[str, ShardReader] = {}


def init_worker() -> None:
    """Process initializer: one core per worker (torch, OpenMP, BLAS and the
    codecs' pools; the pool is the parallelism), Ctrl-C left to the parent,
    exit when the parent is gone."""
    limit_worker_threads()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()


def _close_readers() -> None:
    while _READERS:
        _READERS.popitem()[1].close()


def prepare_study(task: StudyTask) -> StudyResult:
    """Read one study from its source shard and compute its prefix value.

    Never raises for bad data: a ``DataEngineError`` (``decode``,
    ``data_loss``, ...) or an unexpected exception (``internal``) becomes a
    value recording the error kind and a message naming the sample, as the
    engine reports a failed decode. Source files that cannot be read at all
    (``OSError``) and ``MemoryError`` are raised: they say nothing about the
    study, so they must not be recorded as its result."""
    # Here, not at the top: the parent never decodes (see the module docstring).
    from dataengine.pipeline.prefix import run_prefix

    t0 = time.process_time()
    sid = task.sample_id
    kind: str | None = None
    message = ""
    try:
        reader = _READERS.get(task.shard_path)
        if reader is None:
            reader = _READERS[task.shard_path] = ShardReader(Path(task.shard_path))
        value = reader.get(sid)
        record = parse_record(decompress_value(value, sample_id=sid), sample_id=sid)
        blob = encode_prefix(sid, run_prefix(record, task.spec))
    except DataEngineError as exc:
        kind, message = exc.kind, str(exc)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # a bug or an unexpected library failure, as the engine reports it
        _LOG.exception("sample %d: prefix failed unexpectedly", sid)
        kind, message = "internal", f"{type(exc).__name__}: {exc}"
    if kind is not None:
        if "sample" not in message:
            message = f"sample {sid}: {message}"
        blob = encode_prefix_error(sid, kind, message)
    return StudyResult(sid, compress_blob(blob), kind, message, time.process_time() - t0)


def results_inline(tasks: Iterator[StudyTask]) -> Iterator[StudyResult]:
    try:
        for task in tasks:
            yield prepare_study(task)
    finally:
        _close_readers()  # LMDB allows one environment per file per process


_PRELOAD = ("dataengine.prepared._worker", "dataengine.pipeline.prefix")


def results_pool(tasks: Iterator[StudyTask], workers: int, window: int) -> Iterator[StudyResult]:
    ctx = multiprocessing.get_context("forkserver")
    # Ignored when this process's fork server already runs (the workers then
    # import the decode code themselves, as spawned ones do). The fork server
    # (on first use) and every worker start inside the one-thread environment.
    ctx.set_forkserver_preload(list(_PRELOAD))
    try:
        with one_core_pool(workers, ctx, init_worker, start=workers) as pool:
            for task, future in in_order(pool, prepare_study, tasks, window):
                yield _collect(task, future)
    finally:
        _stop_fork_server()


def _stop_fork_server() -> None:
    """Stop this process's fork server and wait for it, once the pool's
    workers are gone: the server reaps the workers it forked, so waiting for
    it counts its CPU time and theirs in this process's children (rusage),
    as spawned workers' would be. The next pool starts a new one.
    ``ForkServer._stop`` is the standard library's own way to do this (its
    tests use it); without it the server stops when this process exits."""
    server = getattr(forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if stop is not None:
        stop()


def _collect(task: StudyTask, future: Future[StudyResult]) -> StudyResult:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise PrepareError(
            f"a prepare worker died (crash or out of memory) around sample {task.sample_id}: "
            f"{exc}; rerun the same command to resume"
        ) from exc
    except OSError as exc:
        raise PrepareError(
            f"sample {task.sample_id}: cannot read {task.shard_path}: {exc}"
        ) from exc
