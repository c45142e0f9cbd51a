"""The decode worker pool: spawned processes that run ``tasks.produce_sample``.

Python's GIL keeps one process from using many cores, so decoding and
augmentation run here, not in gRPC threads (design brief, section 5). Each
worker computes on one thread (``dataengine/threads.py``): the workers start
with ``OMP_NUM_THREADS=1`` and the like in their environment, and their
initializer limits every pool already loaded.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from dataengine.server.tasks import SampleTask, TaskResult, init_worker, produce_sample
from dataengine.threads import worker_environment

__all__ = ["WorkerPool"]

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")


def _ready() -> bool:
    return True


class WorkerPool:
    """``start()`` spawns ``workers`` processes and waits until each has
    imported the pipeline; ``stop()`` cancels queued work and joins them.
    ``test_delay_s`` makes each sample task sleep first (test only)."""

    def __init__(self, workers: int, test_delay_s: float = 0.0) -> None:
        self.workers = workers
        self.test_delay_s = test_delay_s
        self._executor: cf.ProcessPoolExecutor | None = None
        self._pending = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        self._executor = self._spawn()
        _LOG.info("decode pool ready: %d worker processes", self.workers)

    def _spawn(self) -> cf.ProcessPoolExecutor:
        # The executor starts a process per submit until it has ``workers``:
        # all of them start inside the block and inherit its environment.
        with worker_environment():
            executor = cf.ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker,
                initargs=(self.test_delay_s,),
            )
            ready = [executor.submit(_ready) for _ in range(self.workers)]
        cf.wait(ready)
        return executor

    def recover(self) -> None:
        """Replace a broken pool (a worker was killed: OOM, a native crash).
        Streams that saw the break fail with UNAVAILABLE; later ones use the
        new workers. Safe to call from many threads at once."""
        with self._lock:
            broken = self._executor
            if broken is None or not getattr(broken, "_broken", False):
                return  # another thread already replaced it, or it is stopped
            _LOG.error("decode worker pool is broken; starting %d new workers", self.workers)
            self._executor = self._spawn()
            self._pending = 0
        broken.shutdown(wait=False, cancel_futures=True)

    @property
    def pending(self) -> int:
        """Tasks submitted and not finished (the decode queue depth)."""
        return self._pending

    def submit(self, task: SampleTask) -> cf.Future[TaskResult]:
        """Queue one task (``tasks.produce_sample`` runs it in a worker),
        stamped with the time it was queued (its queue wait)."""
        return self.call(produce_sample, dataclasses.replace(task, submitted=time.monotonic()))

    def call(self, fn: Callable[..., _T], *args: Any) -> cf.Future[_T]:
        """Run a picklable module-level function in one worker, for
        diagnostics (what a worker runs with: threads, memory, CPU time).
        Counted in ``pending`` like a task."""
        with self._lock:
            if self._executor is None:
                raise RuntimeError("worker pool is not started")
            executor = self._executor
            self._pending += 1
        try:
            future = executor.submit(fn, *args)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, _: cf.Future[Any] | None) -> None:
        with self._lock:
            self._pending = max(0, self._pending - 1)

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
