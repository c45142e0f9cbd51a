"""What the trainer reports: the data-wait fraction, defined once, and the
Prometheus metrics of ``python -m trainer --metrics-port PORT``.

Data wait
---------
The product's headline figure. One definition, used by the trainer's
summary line, its metrics, ``make demo`` and the dashboards and alerts in
``deploy/``::

    data-wait fraction = seconds the training loop blocked waiting for its
                         next micro-batch / wall seconds of its optimizer steps

A step's wall time runs from asking for its first micro-batch to the end of
its last ``engine.step()`` (the device synchronized); the wait is the time
inside ``next(batches)``, summed over the step's micro-batches. Two windows,
each reported under its own name:

- **run** (``data wait ... whole run``, ``window="run"``): every optimizer
  step this process ran, the first one included. The first step pays for
  connecting to the engines, cold engine caches and the first CUDA kernels.
- **steady** (``steady state``, ``window="steady"``): every step but this
  process's first. This is the figure to hold under 10%; with one step only,
  it equals the run figure.

Over a long run both converge; on a short one (``make demo``'s 40 steps) the
cold first step can make the run figure several times the steady one.
Prometheus rules use the same ratio over a time window:
``rate(medstream_trainer_data_wait_seconds_total[5m]) /
rate(medstream_trainer_step_seconds_sum[5m])``.

Metrics
-------
Each rank serves its own on ``--metrics-port + LOCAL_RANK`` (``0``: off),
plain HTTP on every interface (figures only, no data), through the engine's
``MetricsServer``. Per rank, with this rank's samples and waits:

- ``medstream_trainer_step_seconds`` (histogram): optimizer step wall time;
  its ``_sum`` is the total step seconds and ``_count`` the steps;
- ``medstream_trainer_data_wait_seconds_total``, ``medstream_trainer_samples_total``;
- ``medstream_trainer_data_wait_fraction{window="run"|"steady"}``;
- over the steps that ended in the last ``window_s`` seconds (at least the
  last step; the first step is left out once there are others):
  ``medstream_trainer_samples_per_second``, ``medstream_trainer_tokens_per_second``
  (sequence positions: image + waveform + text tokens, padding included) and
  ``medstream_trainer_demand_samples_per_second``, the samples/s this rank
  would consume with zero data wait: samples / (step seconds - wait seconds),
  the ``demand`` that ``dataengine.capacity.engines_needed`` takes;
- ``medstream_trainer_loss`` (the step's loss, mean over ranks),
  ``medstream_trainer_learning_rate``, ``medstream_trainer_info{rank,
  world_size,local_rank}`` (1);
- from the engine client's discovery (``EngineClient.stats.discovery``):
  ``medstream_trainer_discovered_engines{source}`` (engines in the last good
  resolve) and ``medstream_trainer_discovery_failures_total{source}``.
  ``source`` is the ``dns:///...`` or ``file:///...`` source; a fixed list
  of engines is not discovered and has no series.

Prometheus scrapes every 15-60 s, so a short job would end before its last
figures are read: ``--metrics-linger S`` keeps the endpoint up after the last
step until one scrape has read the final figures, for at most ``S`` seconds.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from dataengine.client import EngineClient
    from trainer.distributed import DistInfo

__all__ = ["DataWait", "TrainerMetrics"]

_LOG = logging.getLogger(__name__)

_STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class DataWait:
    """The data-wait fraction over the whole run and in steady state (the
    module docstring defines both); 0..1."""

    run: float
    steady: float

    @classmethod
    def of_steps(cls, step_seconds: Sequence[float], wait_seconds: Sequence[float]) -> DataWait:
        """From per-step wall seconds and wait seconds, in step order (the
        first entry is the process's first, cold step)."""
        if len(step_seconds) != len(wait_seconds):
            raise ValueError(f"{len(step_seconds)} step times but {len(wait_seconds)} wait times")
        if not step_seconds:
            return cls(0.0, 0.0)
        run = _ratio(sum(wait_seconds), sum(step_seconds))
        if len(step_seconds) == 1:
            return cls(run, run)
        return cls(run, _ratio(sum(wait_seconds[1:]), sum(step_seconds[1:])))

    def format(self) -> str:
        """The one wording every printout uses."""
        return (
            f"data wait {100 * self.run:.1f}% of step time over the whole run, "
            f"{100 * self.steady:.1f}% in steady state (first step left out)"
        )


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


class _Discovery(Collector):
    """Reads the client's discovery figures (``DiscoveryStats``) at scrape
    time; a fixed list of engines is not discovered and has no series."""

    def __init__(self, client: EngineClient | None) -> None:
        self._client = client

    def collect(self) -> Iterator[Metric]:
        engines = GaugeMetricFamily(
            "medstream_trainer_discovered_engines",
            "Engines in the discovery source's last good resolve",
            labels=["source"],
        )
        failures = CounterMetricFamily(
            "medstream_trainer_discovery_failures",
            "Resolves of the discovery source that failed or found no engine",
            labels=["source"],
        )
        found = self._client.stats.discovery if self._client is not None else None
        if found is not None and found.source:
            engines.add_metric([found.source], found.engines)
            failures.add_metric([found.source], found.failures)
        yield engines
        yield failures


class _ScrapeWatch(Collector):
    """Notes each scrape, to know when the final figures have been read."""

    def __init__(self) -> None:
        self.finished = False
        self.read_after_finish = threading.Event()

    def collect(self) -> Iterator[Metric]:
        if self.finished:
            self.read_after_finish.set()
        return iter(())


class TrainerMetrics:
    """One rank's metrics (see the module docstring). ``observe_step`` after
    each optimizer step; ``serve(port)`` exposes them; ``close(linger_s)``
    waits for a last scrape (at most ``linger_s`` seconds) and stops serving.
    Also the source of the summary's ``DataWait``."""

    def __init__(
        self,
        *,
        rank: int = 0,
        world_size: int = 1,
        local_rank: int = 0,
        tokens_per_sample: int = 0,
        client: EngineClient | None = None,
        window_s: float = 30.0,
    ) -> None:
        self.registry = CollectorRegistry()
        self._tokens_per_sample = tokens_per_sample
        self._window_s = window_s
        self._steps: list[float] = []
        self._waits: list[float] = []
        # (end time, step s, wait s, samples) of recent steps, for the window.
        self._recent: collections.deque[tuple[float, float, float, float]] = collections.deque()
        self._server: Any = None
        self.linger_s = 0.0  # what leaving the ``with`` block waits for a last scrape
        self._watch = _ScrapeWatch()
        r = self.registry
        self._step = Histogram(
            "medstream_trainer_step_seconds",
            "Optimizer step wall time (first micro-batch asked to step end), seconds",
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self._wait = Counter(
            "medstream_trainer_data_wait_seconds",
            "Seconds the loop blocked waiting for micro-batches",
            registry=r,
        )
        self._samples = Counter(
            "medstream_trainer_samples", "Samples trained on by this rank", registry=r
        )
        self._fraction = Gauge(
            "medstream_trainer_data_wait_fraction",
            'Data-wait seconds / step seconds; window="run": every step, '
            '"steady": all but the first',
            ["window"],
            registry=r,
        )
        self._rate = Gauge(
            "medstream_trainer_samples_per_second",
            f"Samples/s this rank trained on, last {window_s:g} s",
            registry=r,
        )
        self._tokens = Gauge(
            "medstream_trainer_tokens_per_second",
            f"Sequence positions/s (image + waveform + text tokens), last {window_s:g} s",
            registry=r,
        )
        self._demand = Gauge(
            "medstream_trainer_demand_samples_per_second",
            f"Samples/s this rank would consume with zero data wait, last {window_s:g} s",
            registry=r,
        )
        self._loss = Gauge(
            "medstream_trainer_loss", "Last step's loss, mean over ranks", registry=r
        )
        self._lr = Gauge("medstream_trainer_learning_rate", "Last step's learning rate", registry=r)
        info = Gauge(
            "medstream_trainer_info",
            "This process's place in the job (value 1)",
            ["rank", "world_size", "local_rank"],
            registry=r,
        )
        info.labels(str(rank), str(world_size), str(local_rank)).set(1)
        for window in ("run", "steady"):
            self._fraction.labels(window).set(0)
        r.register(_Discovery(client))
        r.register(self._watch)

    @property
    def data_wait(self) -> DataWait:
        return DataWait.of_steps(self._steps, self._waits)

    @property
    def step_seconds(self) -> list[float]:
        return list(self._steps)

    def observe_step(
        self, step_s: float, wait_s: float, samples: float, loss: float, lr: float
    ) -> None:
        """Record one optimizer step of this rank: its wall seconds, the
        seconds it waited for data, its samples; the loss and rate it ran at."""
        now = time.monotonic()
        self._steps.append(step_s)
        self._waits.append(wait_s)
        self._step.observe(step_s)
        self._wait.inc(wait_s)
        self._samples.inc(samples)
        self._loss.set(loss)
        self._lr.set(lr)
        dw = self.data_wait
        self._fraction.labels("run").set(dw.run)
        self._fraction.labels("steady").set(dw.steady)
        recent = self._recent
        if len(self._steps) == 2:
            recent.clear()  # the cold first step leaves the window once another exists
        recent.append((now, step_s, wait_s, samples))
        while len(recent) > 1 and recent[0][0] < now - self._window_s:
            recent.popleft()
        seconds = sum(s for _, s, _, _ in recent)
        computing = sum(s - w for _, s, w, _ in recent)
        n = sum(x for _, _, _, x in recent)
        self._rate.set(_ratio(n, seconds))
        self._tokens.set(_ratio(n * self._tokens_per_sample, seconds))
        self._demand.set(_ratio(n, computing))

    @classmethod
    def for_rank(
        cls, dist: DistInfo, tokens_per_sample: int, client: EngineClient | None, port: int
    ) -> TrainerMetrics:
        """This rank's metrics, served at ``port + dist.local_rank`` unless
        ``port`` is 0."""
        metrics = cls(
            rank=dist.rank,
            world_size=dist.world_size,
            local_rank=dist.local_rank,
            tokens_per_sample=tokens_per_sample,
            client=client,
        )
        if port:
            metrics.serve(port + dist.local_rank)
        return metrics

    def __enter__(self) -> TrainerMetrics:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        """Stop serving; lingers ``linger_s`` for a last scrape only when the
        block ended without an exception."""
        self.close(self.linger_s if exc_type is None else 0.0)

    def serve(self, port: int) -> int:
        """Serve on every interface at ``port`` (0: a free one); returns the port."""
        from dataengine.server.metrics import MetricsServer

        self._server = MetricsServer("0.0.0.0", port, self.registry, None).start()
        _LOG.info("metrics on :%d/metrics", self._server.port)
        return int(self._server.port)

    def close(self, linger_s: float = 0.0) -> None:
        """Stop serving, once a scrape has read the final figures or after
        ``linger_s`` seconds, whichever is first."""
        if self._server is None:
            return
        self._watch.finished = True
        if linger_s > 0 and not self._watch.read_after_finish.wait(linger_s):
            _LOG.info("metrics: no scrape within %.0f s of the last step", linger_s)
        self._server.stop()
        self._server = None
