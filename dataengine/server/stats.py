"""Engine counters: one ``StatsRecorder`` per engine, read by ``GetStats`` and
by the Prometheus exporter, so both always show the same figures."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from dataengine import __version__
from dataengine.server.usage import QUEUE_WAIT_BUCKETS, WorkerUsage
from dataengine.tiers.counters import CacheCounters
from dataengine.tiers.stack import SOURCES
from dataengine.transport import TRANSPORTS
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["STAGES", "PrometheusCollector", "StatsRecorder", "cache_stats"]

# Pipeline stages in data-path order; "send" is time the front spends handing
# bytes to gRPC (it grows when clients do not keep up).
STAGES = ("read", "decompress", "decode", "augment", "serialize", "send")
_RATE_WINDOW_S = 10.0
# Per-tier figures as medstream_engine_cache_<field>{tier="L0"|"L1"|"L1d"|"L2"}.
_TIER_METRICS: tuple[tuple[str, str, type[CounterMetricFamily | GaugeMetricFamily]], ...] = (
    (
        "hits",
        "Samples found in the tier (L2: reads from the shared filesystem)",
        CounterMetricFamily,
    ),
    ("misses", "Samples not found in the tier", CounterMetricFamily),
    ("evictions", "Entries evicted to stay within the budget", CounterMetricFamily),
    ("bytes_read", "Bytes read out of the tier", CounterMetricFamily),
    ("bytes_held", "Bytes held in the tier", GaugeMetricFamily),
    ("budget_bytes", "Byte budget of the tier (0: none)", GaugeMetricFamily),
    ("entries", "Entries held (L0, L1d: samples, L1/L2: shards)", GaugeMetricFamily),
    (
        "fills",
        "Entries written (L0: prefixes stored, L1: shards copied, L1d: prefixes written)",
        CounterMetricFamily,
    ),
    ("fill_seconds_total", "Seconds spent on fills", CounterMetricFamily),
    ("fill_mean_ms", "Mean fill latency, milliseconds", GaugeMetricFamily),
    ("prefetch_fills", "Fills completed before a stream needed them", CounterMetricFamily),
    ("prefetch_lead_mean_ms", "Mean lead of prefetch fills over first use, ms", GaugeMetricFamily),
    ("waits", "Times a stream waited for a fill in progress", CounterMetricFamily),
    ("wait_seconds_total", "Seconds streams waited for fills", CounterMetricFamily),
)


class StatsRecorder:
    """Thread-safe counters. ``gauges`` are callables sampled at read time
    (queue depths); ``tiers`` returns ``CacheCounters`` per tier ("L0", "L1",
    "L1d", "L2"), also sampled at read time. Served samples are also counted
    per dataset by the source of their prefix (``tiers.stack.SOURCES``).
    ``usage`` is the capacity signal over the last ``capacity_window_s``
    seconds (``server/usage.py``)."""

    def __init__(
        self, engine_id: str, workers: int, datasets: list[str], capacity_window_s: float = 30.0
    ) -> None:
        self.engine_id = engine_id
        self.workers = workers
        self.usage = WorkerUsage(workers, capacity_window_s)
        self.datasets = datasets
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._samples = 0
        self._bytes = 0
        self._streams_total = 0
        self._stage_seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self._stage_count: dict[str, int] = dict.fromkeys(STAGES, 0)
        self._errors: collections.Counter[str] = collections.Counter()
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self._sources: dict[str, collections.Counter[str]] = {
            name: collections.Counter() for name in datasets
        }
        self._transports = collections.Counter(dict.fromkeys(TRANSPORTS, 0))
        self.shared_segments: Callable[[], int] = lambda: 0
        self.data_channels: Callable[[], int] = lambda: 0
        self.insecure = False  # started with --insecure
        self.gauges: dict[str, Callable[[], int]] = {}
        self.tiers: Callable[[], Mapping[str, CacheCounters]] = dict

    def add_stage_times(self, timings: Mapping[str, float]) -> None:
        with self._lock:
            for stage, seconds in timings.items():
                self._stage_seconds[stage] = self._stage_seconds.get(stage, 0.0) + seconds
                self._stage_count[stage] = self._stage_count.get(stage, 0) + 1

    def add_served(self, samples: int, nbytes: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._samples += samples
            self._bytes += nbytes
            self._recent.append((now, samples))
            while self._recent and now - self._recent[0][0] > _RATE_WINDOW_S:
                self._recent.popleft()

    def add_source(self, dataset: str, source: str) -> None:
        """One served sample of ``dataset`` whose prefix came from ``source``
        ("prepared", "decode_cache", "decoded" or "ram")."""
        with self._lock:
            self._sources.setdefault(dataset, collections.Counter())[source] += 1

    def add_transport(self, transport: str) -> None:
        """One served sample sent by ``transport`` ("tcp" or "shared_memory")."""
        with self._lock:
            self._transports[transport] += 1

    def add_error(self, kind: str, count: int = 1) -> None:
        with self._lock:
            self._errors[kind] += count

    def add_stream(self) -> None:
        with self._lock:
            self._streams_total += 1

    def _rate(self, now: float) -> float:
        recent = [(t, n) for t, n in self._recent if now - t <= _RATE_WINDOW_S]
        if not recent:
            return 0.0
        span = max(now - recent[0][0], min(_RATE_WINDOW_S, now - self._started), 1e-3)
        return sum(n for _, n in recent) / span

    def snapshot(self) -> pb.EngineStats:
        """The current figures as the ``GetStats`` reply."""
        now = time.monotonic()
        with self._lock:
            stages = [
                pb.StageStats(
                    stage=stage,
                    count=self._stage_count[stage],
                    total_seconds=self._stage_seconds[stage],
                    mean_ms=1e3 * self._stage_seconds[stage] / max(1, self._stage_count[stage]),
                )
                for stage in self._stage_seconds
            ]
            busiest = max(stages, key=lambda s: s.total_seconds)
            msg = pb.EngineStats(
                engine_id=self.engine_id,
                version=__version__,
                uptime_seconds=now - self._started,
                samples_served=self._samples,
                bytes_served=self._bytes,
                samples_per_second=self._rate(now),
                stages=stages,
                errors=dict(self._errors),
                workers=self.workers,
                bottleneck_stage=busiest.stage if busiest.total_seconds > 0 else "",
                streams_total=self._streams_total,
                datasets=self.datasets,
                sources=[
                    pb.SourceStats(dataset=name, **{src: counts[src] for src in SOURCES})
                    for name, counts in sorted(self._sources.items())
                ],
                transports=dict(self._transports),
            )
        msg.shared_segments = self.shared_segments()
        msg.data_channels = self.data_channels()
        msg.insecure = self.insecure
        msg.capacity.CopyFrom(self.usage.snapshot())
        for name, gauge in self.gauges.items():
            msg.queue_depths[name] = gauge()
        for tier, c in self.tiers().items():
            msg.caches.append(cache_stats(tier, c))
        return msg


def cache_stats(tier: str, c: CacheCounters) -> pb.CacheStats:
    """One tier's counters as the wire message (means in milliseconds)."""
    return pb.CacheStats(
        tier=tier,
        hits=c.hits,
        misses=c.misses,
        bytes_held=c.bytes_held,
        budget_bytes=c.budget_bytes,
        entries=c.entries,
        evictions=c.evictions,
        bytes_read=c.bytes_read,
        fills=c.fills,
        fill_seconds_total=c.fill_seconds_total,
        fill_mean_ms=1e3 * c.fill_seconds_total / c.fills if c.fills else 0.0,
        prefetch_fills=c.prefetch_fills,
        prefetch_lead_mean_ms=(
            1e3 * c.prefetch_lead_seconds_total / c.prefetch_fills if c.prefetch_fills else 0.0
        ),
        waits=c.waits,
        wait_seconds_total=c.wait_seconds_total,
    )


class PrometheusCollector(Collector):
    """Exposes a ``StatsRecorder`` snapshot as ``medstream_engine_*`` metrics."""

    def __init__(self, stats: StatsRecorder) -> None:
        self._stats = stats

    def collect(
        self,
    ) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        s = self._stats.snapshot()
        yield from _capacity_metrics(s.capacity, self._stats.usage)
        yield CounterMetricFamily(
            "medstream_engine_samples_served", "Samples streamed", value=s.samples_served
        )
        yield CounterMetricFamily(
            "medstream_engine_bytes_served",
            "Serialized sample bytes streamed",
            value=s.bytes_served,
        )
        yield CounterMetricFamily(
            "medstream_engine_streams", "StreamSamples calls accepted", value=s.streams_total
        )
        yield GaugeMetricFamily(
            "medstream_engine_samples_per_second",
            "Samples per second over the last 10 s",
            value=s.samples_per_second,
        )
        stage_s = CounterMetricFamily(
            "medstream_engine_stage_seconds", "Seconds spent per stage", labels=["stage"]
        )
        stage_n = CounterMetricFamily(
            "medstream_engine_stage_calls", "Samples processed per stage", labels=["stage"]
        )
        for st in s.stages:
            stage_s.add_metric([st.stage], st.total_seconds)
            stage_n.add_metric([st.stage], st.count)
        yield stage_s
        yield stage_n
        queues = GaugeMetricFamily("medstream_engine_queue_depth", "Queue depth", labels=["queue"])
        for name, depth in s.queue_depths.items():
            queues.add_metric([name], depth)
        yield queues
        sources = CounterMetricFamily(
            "medstream_engine_samples_by_source",
            "Samples streamed, by dataset and the source of their prefix "
            "(prepared, decode_cache, decoded, ram)",
            labels=["dataset", "source"],
        )
        for row in s.sources:
            for src in SOURCES:
                sources.add_metric([row.dataset, src], getattr(row, src))
        yield sources
        transports = CounterMetricFamily(
            "medstream_engine_samples_by_transport",
            "Samples streamed, by transport (tcp, data_channel, shared_memory)",
            labels=["transport"],
        )
        for name, count in sorted(s.transports.items()):
            transports.add_metric([name], count)
        yield transports
        yield GaugeMetricFamily(
            "medstream_engine_shared_segments",
            "Shared-memory segments of same-host clients attached now",
            value=s.shared_segments,
        )
        yield GaugeMetricFamily(
            "medstream_engine_data_channels",
            "TCP data channels of clients connected now",
            value=s.data_channels,
        )
        errors = CounterMetricFamily("medstream_engine_errors", "Errors by kind", labels=["kind"])
        for kind, count in s.errors.items():
            errors.add_metric([kind], count)
        yield errors
        for field, help_text, family in _TIER_METRICS:
            metric = family(f"medstream_engine_cache_{field}", help_text, labels=["tier"])
            for c in s.caches:
                metric.add_metric([c.tier], getattr(c, field))
            yield metric


def _capacity_metrics(
    c: pb.CapacityStats, usage: WorkerUsage
) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
    """The capacity signal (``server/usage.py``): gauges over the window,
    counters and the queue-wait histogram since start. Every series is
    exported from the start, at zero, so dashboards and alerts find them."""
    window = f"over the last {usage.window_s:g} s"
    yield GaugeMetricFamily("medstream_engine_workers", "Decode worker processes", value=c.workers)
    yield GaugeMetricFamily(
        "medstream_engine_worker_busy_fraction",
        f"Share of the decode workers' wall time spent in tasks (0..1), {window}",
        value=c.worker_busy_fraction,
    )
    yield GaugeMetricFamily(
        "medstream_engine_capacity_samples_per_second",
        "Samples/s this engine would deliver with its workers fully busy, at the recent "
        f"sample mix, {window} (0: nothing served in the window)",
        value=c.capacity_samples_per_second,
    )
    cpu = CounterMetricFamily(
        "medstream_engine_sample_cpu_seconds",
        "Decode-worker CPU seconds by stage and by the source of the sample's prefix",
        labels=["stage", "source"],
    )
    cpu_totals, counts, total = usage.totals()
    for (source, stage), seconds in sorted(cpu_totals.items()):
        cpu.add_metric([stage, source], seconds)
    yield cpu
    running, buckets = 0, []
    for bound, count in zip((*QUEUE_WAIT_BUCKETS, float("inf")), counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else f"{bound:g}", running))
    yield HistogramMetricFamily(
        "medstream_engine_queue_wait_seconds",
        "Seconds a decode task waited from the front's submit until a worker took it",
        buckets=buckets,
        sum_value=total,
    )
