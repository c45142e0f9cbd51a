"""The capacity signal: how busy an engine's decode workers are, what a
sample costs them, and what its clients ask of it.

Each finished decode task reports, measured in the worker, when it started
and finished (``time.monotonic()``, one clock for every process of a Linux
host) and its CPU seconds by stage; the front adds when it was queued. The
figures land in one-second bins, and the gauges read the bins of the last
``window_s`` seconds, so memory stays constant at any rate:

- ``worker_busy_fraction``: the wall seconds workers spent in tasks, over
  ``workers x span`` (tasks still running are counted when they finish);
- ``queue_wait``: seconds from the front's submit to a worker's start;
- ``capacity``: samples/s the engine would deliver with every worker busy,
  at the recent sample mix::

      capacity = min(workers / wall_per_sample, cores / cpu_per_sample)

  where ``wall_per_sample`` and ``cpu_per_sample`` are the worker wall and
  CPU seconds of every task that finished in the window (decodes ahead into
  L0 and failures included) divided by the samples served in it, and
  ``cores`` is ``min(workers, the CPUs this process may use)``. While the
  workers are fully busy this is the delivered rate; below that it is the
  delivered rate divided by the busy fraction. Limits: it counts only decode
  workers (a saturated gRPC front, the ``send`` stage, delivers less); it
  holds for the recent source mix (prepared views cost far less than fresh
  decodes); on a host whose cores other processes also use, busy workers
  run slower than the figure taken at light load promises. With no sample
  served in the window it is 0 (unknown).

Client demand arrives in the ``medstream-demand`` request metadata of each
``StreamSamples`` call (``dataengine/demand.py``): the client's id,
the samples/s its trainer consumed and its data-wait fraction; the latest
report of each client seen within the window is kept (at most
``_MAX_CLIENTS``).
"""

from __future__ import annotations

import bisect
import collections
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dataengine.tiers.stack import SOURCES
from dataengine.v1 import dataengine_pb2 as pb

__all__ = [
    "CPU_STAGES",
    "QUEUE_WAIT_BUCKETS",
    "TaskUsage",
    "WorkerUsage",
    "available_cores",
]

# Worker stages whose CPU is measured; "other" is the rest of a task (an L0
# hit's prefix parse, a decode cache write, the task's own overhead).
CPU_STAGES = ("read", "decompress", "decode", "augment", "serialize", "other")
# Upper bounds (seconds) of medstream_engine_queue_wait_seconds.
QUEUE_WAIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BIN_S = 1.0
_MAX_CLIENTS = 1024


def available_cores() -> float:
    """CPUs this process may use: its affinity mask, lowered by a cgroup v2
    CPU quota (``cpu.max``, a container's limit) when there is one."""
    try:
        cores = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = float(os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return max(cores, 1e-3)


@dataclass(frozen=True)
class TaskUsage:
    """One finished decode task. Times are ``time.monotonic()`` seconds;
    ``cpu`` is CPU seconds by stage (``CPU_STAGES``); ``source`` is where
    the sample's prefix came from; ``served`` says whether it produced a
    served sample (False: a decode ahead into L0, or a failed sample)."""

    queued: float
    started: float
    finished: float
    cpu: Mapping[str, float]
    source: str
    served: bool


@dataclass
class _Bin:
    busy: float = 0.0  # worker wall seconds inside this bin
    wall: float = 0.0  # wall seconds of the tasks that finished in it
    cpu_total: float = 0.0
    tasks: int = 0
    served: collections.Counter[str] = field(default_factory=collections.Counter)
    cpu: dict[tuple[str, str], float] = field(default_factory=dict)  # (source, stage)
    waits: list[int] = field(default_factory=lambda: [0] * (len(QUEUE_WAIT_BUCKETS) + 1))
    wait_sum: float = 0.0


class WorkerUsage:
    """Thread-safe bins of task usage and the latest demand per client.
    ``clock`` is ``time.monotonic`` (a test may pass its own)."""

    def __init__(
        self,
        workers: int,
        window_s: float = 30.0,
        *,
        cores: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.workers = workers
        self.window_s = window_s
        self.cores = min(float(workers), available_cores() if cores is None else cores)
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._bins: dict[int, _Bin] = {}
        self._demand: collections.OrderedDict[str, tuple[float, float, float, str]] = (
            collections.OrderedDict()
        )
        # Since start, for Prometheus counters and the histogram: CPU seconds
        # by (source, stage), queue waits per bucket and their sum.
        self.cpu_totals: dict[tuple[str, str], float] = {
            (src, st): 0.0 for src in SOURCES for st in CPU_STAGES
        }
        self.wait_counts = [0] * (len(QUEUE_WAIT_BUCKETS) + 1)
        self.wait_sum = 0.0

    def _bin(self, index: int) -> _Bin:
        b = self._bins.get(index)
        if b is None:
            b = self._bins[index] = _Bin()
        return b

    def add(self, task: TaskUsage) -> None:
        wait = max(0.0, task.started - task.queued)
        slot = bisect.bisect_left(QUEUE_WAIT_BUCKETS, wait)
        cpu = {st: s for st, s in task.cpu.items() if s > 0}
        with self._lock:
            start, end = task.started, max(task.started, task.finished)
            i = int(start // _BIN_S)
            while i * _BIN_S < end:  # busy seconds split over the bins they span
                lo, hi = max(start, i * _BIN_S), min(end, (i + 1) * _BIN_S)
                if hi > lo:
                    self._bin(i).busy += hi - lo
                i += 1
            b = self._bin(int(end // _BIN_S))
            b.wall += end - start
            b.tasks += 1
            b.waits[slot] += 1
            b.wait_sum += wait
            if task.served:
                b.served[task.source] += 1
            for stage, seconds in cpu.items():
                key = (task.source, stage)
                b.cpu[key] = b.cpu.get(key, 0.0) + seconds
                b.cpu_total += seconds
                self.cpu_totals[key] = self.cpu_totals.get(key, 0.0) + seconds
            self.wait_counts[slot] += 1
            self.wait_sum += wait
            self._prune(self._clock())

    def totals(self) -> tuple[dict[tuple[str, str], float], list[int], float]:
        """Since start: CPU seconds by (source, stage); queue waits per bucket
        of ``QUEUE_WAIT_BUCKETS`` and the open one above them (not
        cumulative), and their sum in seconds."""
        with self._lock:
            return dict(self.cpu_totals), list(self.wait_counts), self.wait_sum

    def add_demand(
        self, client: str, samples_per_second: float, data_wait: float, peer: str
    ) -> None:
        """The latest demand report of ``client`` (reached from ``peer``)."""
        with self._lock:
            self._demand.pop(client, None)
            self._demand[client] = (self._clock(), samples_per_second, data_wait, peer)
            while len(self._demand) > _MAX_CLIENTS:
                self._demand.popitem(last=False)

    def _prune(self, now: float) -> None:
        oldest = int((now - self.window_s) // _BIN_S) - 1
        for index in [i for i in self._bins if i < oldest]:
            del self._bins[index]

    def snapshot(self) -> pb.CapacityStats:
        """The window's figures as the ``GetStats`` message."""
        now = self._clock()
        first = int((now - self.window_s) // _BIN_S)
        with self._lock:
            self._prune(now)
            bins = [b for i, b in self._bins.items() if i >= first]
            span = max(1e-3, now - max(first * _BIN_S, self._started))
            busy = sum(b.busy for b in bins)
            wall = sum(b.wall for b in bins)
            cpu_total = sum(b.cpu_total for b in bins)
            tasks = sum(b.tasks for b in bins)
            served: collections.Counter[str] = collections.Counter()
            cpu: dict[tuple[str, str], float] = {}
            waits = [0] * (len(QUEUE_WAIT_BUCKETS) + 1)
            wait_sum = 0.0
            for b in bins:
                served.update(b.served)
                for key, seconds in b.cpu.items():
                    cpu[key] = cpu.get(key, 0.0) + seconds
                waits = [x + y for x, y in zip(waits, b.waits, strict=True)]
                wait_sum += b.wait_sum
            clients = [
                pb.ClientDemand(
                    client=client,
                    peer=peer,
                    samples_per_second=rate,
                    data_wait_fraction=wait,
                    age_seconds=now - at,
                )
                for client, (at, rate, wait, peer) in self._demand.items()
                if now - at <= self.window_s
            ]
        n = sum(served.values())
        capacity = 0.0
        if n and wall > 0:
            capacity = self.workers * n / wall
            if cpu_total > 0:
                capacity = min(capacity, self.cores * n / cpu_total)
        return pb.CapacityStats(
            window_seconds=span,
            workers=self.workers,
            cores=self.cores,
            worker_busy_fraction=min(1.0, busy / (self.workers * span)),
            samples_per_second=n / span,
            capacity_samples_per_second=capacity,
            worker_seconds_per_sample=wall / n if n else 0.0,
            cpu_seconds_per_sample=cpu_total / n if n else 0.0,
            tasks=tasks,
            queue_wait_mean_seconds=wait_sum / tasks if tasks else 0.0,
            queue_wait_p95_seconds=_quantile(waits, 0.95),
            sources=[
                pb.SourceCost(
                    source=src,
                    samples=served[src],
                    cpu_seconds={st: cpu[(src, st)] for st in CPU_STAGES if (src, st) in cpu},
                )
                for src in SOURCES
            ],
            clients=clients,
        )


def _quantile(counts: list[int], q: float) -> float:
    """The ``q`` quantile of a bucketed histogram, interpolated within its
    bucket (the last, open bucket answers its lower bound)."""
    total = sum(counts)
    if not total:
        return 0.0
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            lo = QUEUE_WAIT_BUCKETS[i - 1] if i else 0.0
            if i == len(QUEUE_WAIT_BUCKETS):
                return lo
            return lo + (QUEUE_WAIT_BUCKETS[i] - lo) * (rank - seen) / count
        seen += count
    return QUEUE_WAIT_BUCKETS[-1]
