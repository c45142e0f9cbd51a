"""The worker side of ``pack``: studies in, ``StudyResult``s out, in order.

``study_results`` packs each study with ``pack_study``: in the calling
process for one worker, else in spawned (never forked) worker processes
through a bounded window of futures, so memory stays bounded by the window,
not the corpus. Workers are limited to one core each (the pool is the
parallelism, see ``dataengine/threads.py``) and exit when the packer dies.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

from dataengine.errors import PackError
from dataengine.pack._config import QuarantineEntry
from dataengine.pack._study import StudyResult, StudyTask, pack_study
from dataengine.procs import exit_with_parent
from dataengine.threads import limit_worker_threads
from dataengine.workers import in_order, one_core_pool

__all__ = ["study_results"]

_LOG = logging.getLogger(__name__)

_WINDOW_PER_WORKER = 4


def study_results(tasks: Iterator[StudyTask], count: int, workers: int) -> Iterator[StudyResult]:
    """``pack_study`` of each of the ``count`` tasks, in task order, on
    ``workers`` processes (the calling one when ``workers`` is 1). Tasks are
    drawn lazily, at most a window ahead of the results consumed. Raises
    ``PackError`` when a worker process dies."""
    if workers == 1:
        for task in tasks:
            yield pack_study(task)
    else:
        yield from _results_pool(tasks, count, workers, _WINDOW_PER_WORKER * workers)


def _init_worker() -> None:
    """Process initializer: one core per worker, exit when the packer is gone."""
    limit_worker_threads()
    exit_with_parent()


def _results_pool(
    tasks: Iterator[StudyTask], count: int, workers: int, window: int
) -> Iterator[StudyResult]:
    ctx = multiprocessing.get_context("spawn")
    with one_core_pool(workers, ctx, _init_worker, start=count) as pool:
        for task, future in in_order(pool, pack_study, tasks, window):
            yield _collect(task, future)


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
