"""``dataengine.workers``: one-core pools and in-order results."""

from __future__ import annotations

import multiprocessing
import os

from dataengine.threads import limit_worker_threads
from dataengine.workers import in_order, one_core_pool


def _square_with_env(n: int) -> tuple[int, str | None]:
    return n * n, os.environ.get("OMP_NUM_THREADS")


def test_results_come_in_task_order_from_one_thread_workers() -> None:
    ctx = multiprocessing.get_context("spawn")
    drawn: list[int] = []

    def tasks():
        for n in range(10):
            drawn.append(n)
            yield n

    with one_core_pool(2, ctx, limit_worker_threads, start=2) as pool:
        results = []
        for task, future in in_order(pool, _square_with_env, tasks(), window=3):
            # Tasks are drawn lazily: never more than the window ahead.
            assert len(drawn) - len(results) <= 3
            results.append((task, *future.result()))
    assert [r[:2] for r in results] == [(n, n * n) for n in range(10)]
    assert {r[2] for r in results} == {"1"}
