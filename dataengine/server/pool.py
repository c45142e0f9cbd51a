"""The decode worker pool: spawned processes that run ``tasks.produce_sample``.

Python's GIL keeps one process from using many cores, so decoding and
augmentation run here, not in gRPC threads (design brief, section 5).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import threading
from pathlib import Path

from dataengine.pipeline.spec import PipelineSpec
from dataengine.server.tasks import TaskResult, init_worker, produce_sample

__all__ = ["WorkerPool"]

_LOG = logging.getLogger(__name__)


def _ready() -> bool:
    return True


class WorkerPool:
    """``start()`` spawns ``workers`` processes and waits until each has
    imported the pipeline; ``stop()`` cancels queued work and joins them."""

    def __init__(self, workers: int, dataset_roots: dict[str, Path]) -> None:
        self.workers = workers
        self._roots = {name: str(root) for name, root in dataset_roots.items()}
        self._executor: cf.ProcessPoolExecutor | None = None
        self._pending = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        self._executor = cf.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(self._roots,),
        )
        warm = [self._executor.submit(_ready) for _ in range(self.workers)]
        cf.wait(warm)
        _LOG.info("decode pool ready: %d worker processes", self.workers)

    @property
    def pending(self) -> int:
        """Tasks submitted and not finished (the decode queue depth)."""
        return self._pending

    def submit(
        self,
        dataset: str,
        sample_id: int,
        spec: PipelineSpec,
        seed: int,
        epoch: int,
        prefix_blob: bytes | None,
    ) -> cf.Future[TaskResult]:
        if self._executor is None:
            raise RuntimeError("worker pool is not started")
        with self._lock:
            self._pending += 1
        future = self._executor.submit(
            produce_sample, dataset, sample_id, spec, seed, epoch, prefix_blob
        )
        future.add_done_callback(self._done)
        return future

    def _done(self, _: cf.Future[TaskResult]) -> None:
        with self._lock:
            self._pending -= 1

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
