"""Process pools for batch jobs (``pack``, ``prepare``): one core per worker,
results in submission order through a bounded window.

``one_core_pool`` starts the executor's processes inside the one-thread
environment (``threads.worker_environment``): an executor starts a process
per submit until it has ``workers``, so the ones the run needs are started
here, at once. ``in_order`` keeps at most ``window`` tasks in flight and
yields ``(task, future)`` pairs in task order, so memory stays bounded by
the window, not the corpus; futures not yet yielded are cancelled when the
consumer stops early.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import TypeVar

from dataengine.threads import worker_environment

__all__ = ["in_order", "one_core_pool"]

T = TypeVar("T")
R = TypeVar("R")


def _ready() -> bool:
    return True


def one_core_pool(
    workers: int, context: BaseContext, initializer: Callable[[], None], *, start: int
) -> ProcessPoolExecutor:
    """An executor of ``workers`` processes from ``context``, ``start`` of
    them started now with the one-thread environment; ``initializer`` should
    call ``threads.limit_worker_threads``."""
    with worker_environment():
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=initializer)
        for _ in range(min(workers, start)):
            pool.submit(_ready)
    return pool


def in_order(
    pool: ProcessPoolExecutor, fn: Callable[[T], R], tasks: Iterator[T], window: int
) -> Iterator[tuple[T, Future[R]]]:
    """``fn(task)`` for each task on ``pool``, yielded as ``(task, future)``
    in task order with at most ``window`` in flight; tasks are drawn lazily."""
    pending: deque[tuple[T, Future[R]]] = deque()
    try:
        for task in tasks:
            pending.append((task, pool.submit(fn, task)))
            if len(pending) >= window:
                yield pending.popleft()
        while pending:
            yield pending.popleft()
    finally:
        for _, future in pending:
            future.cancel()
