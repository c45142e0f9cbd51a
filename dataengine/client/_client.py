"""The trainer-side client: owns the order, asks engines for explicit sample
ids ahead of need, and yields batches as dicts of torch tensors, each in
the dtype it travelled in (``PipelineSpec.image_dtype``/``wave_dtype``:
float32 by default, bfloat16 for a bf16 trainer).

Order: ``epoch_order(seed, epoch)``; rank ``r`` of ``W`` takes positions
``p % W == r`` of each global batch of ``batch_size * W`` positions. The
cursor ``(epoch, position)`` is the next global position after the last
yielded batch, so a resume (with any world size) continues exactly.

Fleet: each shard is served by its rendezvous owner among the *live*
engines (``_fleet.py``; with ``ownership=False`` each micro-batch goes whole
to one live engine, round-robin); up to ``prefetch_batches`` micro-batches are
requested ahead (the credit window). ``_fetch.py`` fetches one micro-batch
exactly once per sample whatever happens to the engines: failover to the
next owner for ids not received, hedges for slow streams, a stall timeout,
and ``EngineUnavailableError`` after ``unavailable_timeout_s`` without any
live engine. A monitor thread cancels stalled streams and probes every
engine's health each ``health_interval_s`` (a drained engine leaves the
ownership ring, a restarted one rejoins it); ``add_endpoint`` grows the
fleet. Samples' bytes depend only on ``(seed, epoch, sample_id)``, so
batches are byte-identical whichever engines serve them.

Discovery: ``endpoints`` may be a ``dns:///NAME:PORT`` or ``file:///PATH``
source (``dataengine/discovery.py``), resolved again every
``discovery_interval_s`` seconds on a thread of its own: engines it starts
listing take work from the next request on, engines it stops listing are
removed as drained (their open streams finish). A failed or empty
resolution keeps the last good set. Ranks resolve on their own and need
not agree at a batch boundary: the discovery module's docstring says why.

One dataset: every engine states its manifest fingerprint (``DatasetInfo.
fingerprint`` and each stream's initial metadata). At start every engine
of the starting set is described and all that answer must state the same
one (``ConfigError`` naming both engines and both fingerprints); later an
engine that states another (added, discovered, or restarted with another
dataset) is refused: never routed to, logged, ``stats.engines_refused``.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import queue
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import torch

from dataengine.client._buffers import BatchBuffers, HostBatch
from dataengine.client._collate import assemble
from dataengine.client._fetch import EngineUnavailableError, Fetcher, status_error
from dataengine.client._fleet import Fleet
from dataengine.client._receive import Received
from dataengine.client.config import ClientConfig, parse_endpoints
from dataengine.client.stats import ClientStats
from dataengine.discovery import EngineSource, SourceWatch, parse_source
from dataengine.errors import ConfigError, DataLossError
from dataengine.order import epoch_order, rank_slice
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["EngineClient", "EngineUnavailableError", "LostSample"]

_LOG = logging.getLogger(__name__)
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# Engines one batch may stream from at once when discovery sizes the fleet
# (call threads start on demand, up to this bound).
_DISCOVERED_ENGINES = 64


@dataclass(frozen=True)
class LostSample:
    """A sample an engine could not produce (it was left out of its batch)."""

    sample_id: int
    kind: str
    message: str


@dataclass
class _Planned:
    """One micro-batch of the plan: global batch at ``position`` of
    ``epoch``; the cursor after it is ``(next_epoch, next_position)``."""

    epoch: int
    position: int
    index: int
    next_epoch: int
    next_position: int
    ids: np.ndarray
    future: cf.Future[_Fetched] | None = field(default=None)


@dataclass(frozen=True)
class _Fetched:
    """One micro-batch as fetched: the stacked good samples, and the lost
    ones in batch order (accounted for by the consuming thread, in order)."""

    batch: HostBatch
    lost: list[LostSample]


class EngineClient:
    """See the module docstring. Keyword arguments are ``ClientConfig`` fields.
    ``stats`` counts failovers, hedges and fleet events (``ClientStats``);
    ``stats.discovery`` what discovery saw (``DiscoveryStats``)."""

    def __init__(self, endpoints: Sequence[str] | str, **kwargs: Any) -> None:
        self.config = ClientConfig.create(endpoints, **kwargs)
        self.stats = ClientStats()
        self._source: EngineSource = parse_source(self.config.endpoints)
        self._discovery: SourceWatch | None = None
        start = self._first_set()
        self._discovered = set(start) if self._source.dynamic else set()
        tls = self.config.client_tls()
        if tls is not None and self._source.kind == "dns":
            # Discovered engines are IP addresses: verify their certificates
            # against the name they were discovered by.
            tls = tls.named(self._source.host)
        self._fleet = Fleet(start, self.stats, tls, self.config.token(), verify=self._verify)
        try:
            self.dataset = self._describe_all()
            self._fleet.probe(self.config.probe_timeout_s)
        except BaseException:
            self._fleet.close()
            raise
        self._starts = np.array([s.first_sample_id for s in self.dataset.shards], dtype=np.int64)
        self._epoch = 0
        self._position = 0
        # The most recent lost samples (bounded) and how many were lost in all.
        self.lost: collections.deque[LostSample] = collections.deque(maxlen=1024)
        self.lost_count = 0
        self._lost_in_a_row = 0
        self._fetcher = Fetcher(
            self.config,
            self._fleet,
            self.stats,
            self.dataset.name,
            self._shards_of,
            max_engines=max(len(start), _DISCOVERED_ENGINES) if self._source.dynamic else None,
        )
        pin = self.config.pin_memory
        self.buffers = BatchBuffers(
            torch.cuda.is_available() if pin is None else pin, self.config.prefetch_batches + 2
        )
        self._batches = cf.ThreadPoolExecutor(
            max_workers=self.config.prefetch_batches, thread_name_prefix="engine-batch"
        )
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="engine-monitor", daemon=True)
        self._monitor.start()
        if self._discovery is not None:
            self._discovery.start()

    # -- dataset ---------------------------------------------------------

    @property
    def num_samples(self) -> int:
        return int(self.dataset.num_samples)

    def _describe(self, endpoints: Sequence[str] | None = None) -> pb.DatasetInfo:
        request = pb.DescribeDatasetRequest(dataset=self.config.dataset or "")
        failures = []
        for endpoint in self._fleet.endpoints() if endpoints is None else endpoints:
            try:
                return self._fleet.stub(endpoint).DescribeDataset(
                    request, timeout=self.config.connect_timeout_s
                )
            except grpc.RpcError as exc:
                if exc.code() not in _RETRYABLE:
                    raise status_error(exc, endpoint) from None
                failures.append(f"{endpoint} ({exc.code().name})")
        raise EngineUnavailableError(
            f"UNAVAILABLE: no engine answered DescribeDataset within "
            f"{self.config.connect_timeout_s}s: " + ", ".join(failures)
        )

    def _describe_all(self) -> pb.DatasetInfo:
        """Describe every engine of the starting set at once. Once one has
        answered, the others get ``probe_timeout_s`` more (a frozen or
        unreachable engine does not hold the start up for
        ``connect_timeout_s``). Of those that answered, the first in the
        order given sets the fleet's fingerprint and every other must state
        the same (``ConfigError`` naming both engines and both
        fingerprints). One that did not answer is checked before it becomes
        live (``_verify``), and again by each stream."""
        cfg = self.config
        request = pb.DescribeDatasetRequest(dataset=cfg.dataset or "")
        endpoints = self._fleet.endpoints()
        finished: queue.SimpleQueue[str] = queue.SimpleQueue()
        futures = {}
        for endpoint in endpoints:
            future = self._fleet.stub(endpoint).DescribeDataset.future(
                request, timeout=cfg.connect_timeout_s
            )
            future.add_done_callback(lambda _, e=endpoint: finished.put(e))
            futures[endpoint] = future
        answered: dict[str, pb.DatasetInfo] = {}
        failures = []
        deadline = time.monotonic() + cfg.connect_timeout_s
        try:
            for _ in endpoints:
                try:
                    endpoint = finished.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                try:
                    answered[endpoint] = futures[endpoint].result()
                except grpc.RpcError as exc:
                    if exc.code() not in _RETRYABLE:
                        raise status_error(exc, endpoint) from None
                    failures.append(f"{endpoint} ({exc.code().name})")
                if len(answered) == 1 and endpoint in answered:
                    deadline = min(deadline, time.monotonic() + cfg.probe_timeout_s)
        finally:
            for future in futures.values():
                future.cancel()  # stragglers: checked before they become live
        if not answered:
            raise EngineUnavailableError(
                f"UNAVAILABLE: no engine answered DescribeDataset within "
                f"{cfg.connect_timeout_s}s: " + ", ".join(failures)
            )
        first, *others = [e for e in endpoints if e in answered]
        info = answered[first]
        self._fleet.set_reference(first, info.fingerprint)
        for endpoint in others:
            reason = self._fleet.mismatch(endpoint, answered[endpoint].fingerprint)
            if reason is not None:
                raise ConfigError(
                    "client.endpoints",
                    f"{reason} (datasets {answered[endpoint].name!r} and {info.name!r}); "
                    "list engines of one dataset only",
                )
        return info

    def _verify(self, endpoint: str) -> str | None:
        """Before ``endpoint`` becomes live (``Fleet.probe``): None if it
        serves the fleet's fingerprint, else why it is refused.
        ``EngineUnavailableError`` if it cannot be asked now."""
        request = pb.DescribeDatasetRequest(dataset=self.dataset.name)
        try:
            info = self._fleet.stub(endpoint).DescribeDataset(
                request, timeout=self.config.probe_timeout_s
            )
        except grpc.RpcError as exc:
            if exc.code() in _RETRYABLE:
                raise EngineUnavailableError(f"{endpoint}: {exc.code().name}") from None
            return (
                f"engine {endpoint} does not serve dataset {self.dataset.name!r} "
                f"({exc.code().name}: {exc.details()}); it gets no work"
            )
        return self._fleet.mismatch(endpoint, info.fingerprint)

    def _shards_of(self, ids: list[int]) -> list[int]:
        """Shard ids of sample ids."""
        return (np.searchsorted(self._starts, np.asarray(ids), side="right") - 1).tolist()

    # -- fleet -----------------------------------------------------------

    def live_endpoints(self) -> list[str]:
        """Engines work is routed to now."""
        return self._fleet.live()

    def add_endpoint(self, endpoint: str) -> bool:
        """Add an engine to the fleet (a new or restarted one). If it answers,
        it must serve the same dataset (the fleet's manifest fingerprint,
        else ``ConfigError`` naming both engines and fingerprints) and it
        becomes live at once: positions not yet requested are routed over
        the fleet including it. If it does not answer yet, the health
        probes make it live once it does (and it is checked then). Returns
        whether it is live now."""
        (endpoint,) = parse_endpoints([endpoint])
        if not self._fleet.add(endpoint):
            return self._fleet.is_live(endpoint)
        try:
            info = self._describe([endpoint])
        except EngineUnavailableError:
            _LOG.info("engine %s added; not answering yet, probing it", endpoint)
            return False
        except BaseException:
            self._fleet.remove(endpoint)
            raise
        reason = self._fleet.mismatch(endpoint, info.fingerprint)
        if reason is not None:
            self._fleet.remove(endpoint)
            raise ConfigError(
                "endpoint", f"{reason} (datasets {info.name!r} and {self.dataset.name!r})"
            )
        status = self._fleet.probe(self.config.probe_timeout_s, [endpoint]).get(endpoint)
        return status == "SERVING"

    def _first_set(self) -> tuple[str, ...]:
        """The starting engines: the list, or the source's first good
        resolution (tried again each second for ``connect_timeout_s``)."""
        source, cfg = self._source, self.config
        if not source.dynamic:
            return source.endpoints
        self.stats.discovery.source = source.text
        watch = SourceWatch(source, cfg.discovery_interval_s, self._apply, self.stats.discovery)
        deadline = time.monotonic() + cfg.connect_timeout_s
        while (got := watch.resolve_once()) is None:
            if time.monotonic() >= deadline:
                raise EngineUnavailableError(
                    f"UNAVAILABLE: {source.text} named no engine within "
                    f"{cfg.connect_timeout_s}s: {self.stats.discovery.last_error}"
                )
            time.sleep(min(1.0, cfg.discovery_interval_s))
        watch.current = got.endpoints
        self._discovery = watch
        return got.endpoints

    def _apply(self, endpoints: tuple[str, ...]) -> None:
        """Discovery thread: the source now lists ``endpoints``. New ones
        join (checked first: ``_verify``); missing ones are removed as
        drained, not as failures."""
        listed = set(endpoints)
        gone = [e for e in self._discovered if e not in listed]
        new = [e for e in endpoints if e not in self._discovered]
        self._discovered = listed
        for endpoint in gone:
            if self._fleet.remove(endpoint):
                self.stats.event("removed", endpoint, f"not listed by {self._source.text}")
        added = [e for e in new if self._fleet.add(e)]
        for endpoint in added:
            self.stats.event("added", endpoint, f"listed by {self._source.text}")
            _LOG.info("engine %s discovered (%s)", endpoint, self._source.text)
        if added:
            self._fleet.probe(self.config.probe_timeout_s, added)

    def _release_removed(self) -> None:
        """Monitor thread: close the channel and the same-host or data
        channel link of each removed engine once its last stream ended, so
        a fleet that changes for days keeps only what it routes to."""
        for endpoint in self._fleet.retired():
            if not self._fetcher.busy(endpoint):
                self._fetcher.receiver.drop(endpoint, "removed from the fleet")
                self._fleet.forget(endpoint)

    def remove_endpoint(self, endpoint: str) -> bool:
        """Stop routing work to ``endpoint`` (its open streams finish); the
        fleet's other engines take over its shards. False if unknown."""
        return self._fleet.remove(endpoint)

    def _watch(self) -> None:
        """Monitor thread: cancel stalled streams; probe health each interval.
        An engine that does not answer its probe has its idle streams (none
        of their samples within the probe's time) cancelled and failed over
        at once, without waiting for the stall timeout; a draining engine
        (NOT_SERVING) keeps its open streams."""
        cfg = self.config
        tick = min(0.5, cfg.stall_timeout_s / 4, cfg.health_interval_s)
        next_probe = time.monotonic() + cfg.health_interval_s
        while not self._stop.wait(tick):
            try:
                now = time.monotonic()
                self._fetcher.check_stalls(now)
                if now >= next_probe:
                    self._release_removed()
                    for endpoint, status in self._fleet.probe(cfg.probe_timeout_s).items():
                        if status == "NO_ANSWER":
                            self._fetcher.check_stalls(
                                time.monotonic(), endpoint, cfg.probe_timeout_s
                            )
                    next_probe = time.monotonic() + cfg.health_interval_s
            except Exception:  # never let the monitor die silently
                _LOG.exception("engine monitor failed; continuing")

    # -- cursor ----------------------------------------------------------

    def state_dict(self) -> dict[str, int]:
        """The resume cursor: the next global position after the last yielded batch."""
        return {"seed": self.config.seed, "epoch": self._epoch, "position": self._position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["seed"]) != self.config.seed:
            raise ConfigError(
                "cursor.seed",
                f"cursor was taken with seed {state['seed']}, client has {self.config.seed}",
            )
        position = int(state["position"])
        if not 0 <= position <= self.num_samples:
            raise ConfigError("cursor.position", f"{position} is outside 0..{self.num_samples}")
        self._epoch, self._position = int(state["epoch"]), position

    # -- batches ---------------------------------------------------------

    def _plan(self, epochs: int | None) -> Iterator[_Planned]:
        cfg = self.config
        n, size = self.num_samples, cfg.batch_size * cfg.world_size
        epoch, position = self._epoch, self._position
        last_epoch = None if epochs is None else epoch + epochs
        while last_epoch is None or epoch < last_epoch:
            order = epoch_order(n, cfg.seed, epoch)
            limit = n - (n - position) % size if cfg.drop_last else n
            while position < limit:
                ids = rank_slice(order, position, cfg.batch_size, cfg.rank, cfg.world_size)
                index = (position // size) * cfg.world_size + cfg.rank
                start, position = position, position + size
                if position >= limit:
                    yield _Planned(epoch, start, index, epoch + 1, 0, ids)
                else:
                    yield _Planned(epoch, start, index, epoch, position, ids)
            epoch, position = epoch + 1, 0

    def batches(self, epochs: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Yield this rank's batches from the cursor on, for ``epochs`` epochs
        (forever when None). Up to ``prefetch_batches`` are requested ahead."""
        for _epoch, _position, batch in self.positioned_batches(epochs):
            yield batch

    def positioned_batches(
        self, epochs: int | None = None
    ) -> Generator[tuple[int, int, dict[str, torch.Tensor]], None, None]:
        """As ``batches``, with each batch's epoch and the global position its
        global batch starts at: ``(epoch, position, batch)``."""
        plan = self._plan(epochs)
        window: collections.deque[_Planned] = collections.deque()
        handed: float | None = None  # when the consumer got the last batch
        try:
            while True:
                asked = time.monotonic()
                while len(window) < self.config.prefetch_batches:
                    item = next(plan, None)
                    if item is None:
                        break
                    if len(item.ids):
                        item.future = self._batches.submit(self._fetch_batch, item)
                    window.append(item)
                if not window:
                    return
                item = window.popleft()
                fetched = item.future.result() if item.future is not None else None
                if fetched is not None:
                    self._account(fetched.lost, len(fetched.batch["sample_id"]))
                self._epoch, self._position = item.next_epoch, item.next_position
                if fetched is not None and len(fetched.batch["sample_id"]):
                    self.stats.batch_yielded()
                    now = time.monotonic()
                    if handed is not None:  # the consumer's wait, and its step before
                        n = len(fetched.batch["sample_id"])
                        self.stats.demand.consumed(n, now - asked, asked - handed)
                    handed = time.monotonic()
                    yield item.epoch, item.position, fetched.batch
        finally:
            for pending in window:
                if pending.future is not None:
                    pending.future.cancel()

    def _fetch_batch(self, item: _Planned) -> _Fetched:
        """Fetch one micro-batch (a batch thread), every sample exactly once."""
        return self._fetcher.fetch(item.epoch, item.ids, item.index, self._collate)

    def _account(self, lost: list[LostSample], good: int) -> None:
        """Record lost samples and spend the failure budget (consumer thread).

        Lost samples come first in this accounting, then the batch's good ones
        reset the run; a batch is all-or-nothing for the budget's purposes."""
        for item in lost:
            self.lost.append(item)
            self.lost_count += 1
            self._lost_in_a_row += 1
            _LOG.warning("sample %d lost (%s): %s", item.sample_id, item.kind, item.message)
            if self._lost_in_a_row >= self.config.max_consecutive_lost:
                raise DataLossError(
                    f"{self._lost_in_a_row} samples in a row could not be produced; "
                    f"the last: {item.kind}: {item.message}"
                )
        if good:
            self._lost_in_a_row = 0

    def _collate(self, received: list[Received]) -> _Fetched:
        """Assemble the good samples into a batch buffer (one copy, in their
        wire dtypes: ``_collate.py``); list the lost ones. The assembly's
        CPU time is counted as receive cost, shared by the samples'
        transports."""
        cpu = time.thread_time()
        good = [r for r in received if r.frame.view.error is None]
        lost = [
            LostSample(r.sample_id, *r.frame.view.error)
            for r in received
            if r.frame.view.error is not None
        ]
        batch, unreadable = assemble([r.frame for r in good], self.buffers)
        for sid, reason in unreadable:  # a shared segment truncated since it arrived
            item = next(r for r in good if r.sample_id == sid)
            if item.link is not None:
                self._fetcher.receiver.link_failed(item.link.endpoint, item.transport, reason)
            lost.append(LostSample(sid, "data_loss", reason))
        if received:
            share = (time.thread_time() - cpu) / len(received)
            for transport in {r.transport for r in received}:
                n = sum(1 for r in received if r.transport == transport)
                self.stats.add_receive(transport, 0, 0, share * n)
        return _Fetched(batch, lost)

    # -- lifecycle -------------------------------------------------------

    def close(self) -> None:
        """Cancel in-flight calls, join the monitor, batch and call threads,
        and close the channels."""
        if self._discovery is not None:
            self._discovery.stop()
        self._stop.set()
        self._fetcher.close()
        self._monitor.join()
        self._batches.shutdown(wait=True, cancel_futures=True)
        self._fleet.close()

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
