"""WorkerUsage: the capacity signal's bins and estimators, on a fake clock."""

from __future__ import annotations

import pytest

from dataengine.server.usage import TaskUsage, WorkerUsage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _task(start: float, wall: float, cpu: float, *, source: str = "decoded", wait: float = 0.0):
    return TaskUsage(
        queued=start - wait,
        started=start,
        finished=start + wall,
        cpu={"decode": cpu * 0.75, "augment": cpu * 0.25},
        source=source,
        served=True,
    )


def test_idle_engine_reports_zeros() -> None:
    clock = Clock()
    usage = WorkerUsage(4, 30.0, cores=4, clock=clock)
    clock.now += 10
    s = usage.snapshot()
    assert (s.workers, s.tasks, s.worker_busy_fraction, s.capacity_samples_per_second) == (
        4,
        0,
        0.0,
        0.0,
    )
    assert [c.source for c in s.sources] == ["prepared", "decode_cache", "decoded", "ram"]


def test_busy_fraction_capacity_and_queue_wait() -> None:
    clock = Clock()
    usage = WorkerUsage(2, 10.0, cores=2, clock=clock)
    # One worker busy back to back for 10 s: 0.1 s per sample, 0.05 s CPU.
    for i in range(100):
        usage.add(_task(1000.0 + 0.1 * i, 0.1, 0.05, wait=0.02))
    clock.now = 1010.0
    s = usage.snapshot()
    assert s.worker_busy_fraction == pytest.approx(0.5)
    assert s.samples_per_second == pytest.approx(10.0)
    # Two workers at 0.1 s wall each: 20 samples/s (CPU allows 40).
    assert s.capacity_samples_per_second == pytest.approx(20.0)
    assert s.worker_seconds_per_sample == pytest.approx(0.1)
    assert s.cpu_seconds_per_sample == pytest.approx(0.05)
    assert s.queue_wait_mean_seconds == pytest.approx(0.02)
    assert 0.01 <= s.queue_wait_p95_seconds <= 0.025
    decoded = next(c for c in s.sources if c.source == "decoded")
    assert decoded.samples == 100
    assert decoded.cpu_seconds["decode"] == pytest.approx(3.75)


def test_capacity_is_bounded_by_cores() -> None:
    clock = Clock()
    usage = WorkerUsage(4, 10.0, cores=1, clock=clock)  # 4 workers share one core
    for i in range(10):
        usage.add(_task(1000.0 + 0.1 * i, 0.1, 0.1))
    clock.now = 1001.0
    s = usage.snapshot()
    assert s.cores == 1
    assert s.capacity_samples_per_second == pytest.approx(10.0)  # 1 core / 0.1 s, not 4 / 0.1


def test_old_tasks_leave_the_window_and_totals_stay() -> None:
    clock = Clock()
    usage = WorkerUsage(1, 5.0, cores=1, clock=clock)
    usage.add(_task(1000.0, 1.0, 0.5, source="prepared", wait=0.3))
    clock.now = 1020.0
    s = usage.snapshot()
    assert s.tasks == 0
    assert s.capacity_samples_per_second == 0.0
    cpu, waits, wait_sum = usage.totals()
    assert cpu[("prepared", "decode")] == pytest.approx(0.375)
    assert sum(waits) == 1
    assert wait_sum == pytest.approx(0.3)


def test_demand_reports_expire_with_the_window() -> None:
    clock = Clock()
    usage = WorkerUsage(1, 5.0, cores=1, clock=clock)
    usage.add_demand("a", 100.0, 0.25, peer="ipv4:127.0.0.1:1")
    clock.now += 3
    usage.add_demand("b", 50.0, 0.0, peer="ipv4:127.0.0.1:2")
    usage.add_demand("a", 120.0, 0.2, peer="ipv4:127.0.0.1:1")  # the latest replaces
    s = usage.snapshot()
    assert {(c.client, c.samples_per_second, c.data_wait_fraction) for c in s.clients} == {
        ("a", 120.0, 0.2),
        ("b", 50.0, 0.0),
    }
    clock.now += 6
    assert not usage.snapshot().clients
