"""Fetch one micro-batch from the fleet, exactly once per sample.

``Fetcher.fetch(epoch, ids, index)`` runs on a batch thread. It routes the
ids to engines (each shard's rendezvous owner among the live engines, or one
engine round-robin without ownership) and opens one ``StreamSamples`` call
per engine on the call pool. Then it watches the calls:

- a sample is kept the first time it arrives; later copies are dropped;
- a call that ends without some of its ids (stream failed, engine killed or
  draining, stall timeout) marks its engine dead, and those ids are asked
  again from the next live candidate (failover);
- a call still running after ``hedge_after_s`` gets a hedge: the next
  candidate engine is asked for its still-missing ids;
- when every id has arrived the remaining calls (hedge losers) are cancelled;
- with ids outstanding and no live engine for ``unavailable_timeout_s``,
  ``EngineUnavailableError`` is raised;
- a stream whose initial metadata states another manifest fingerprint than
  the fleet's (``transport.FINGERPRINT_METADATA``) is cancelled before its
  first sample is read, its engine refused (``Fleet.refuse``) and its ids
  asked from the others.

The monitor thread calls ``check_stalls`` to cancel calls that delivered
nothing for ``stall_timeout_s``.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import numpy as np

from dataengine.client._collate import Frame
from dataengine.client._fleet import Fleet
from dataengine.client._receive import LinkFailure, Received, Receiver, Slots
from dataengine.client.config import ClientConfig
from dataengine.client.stats import ClientStats
from dataengine.errors import ConfigError, DataEngineError, NotFoundError
from dataengine.frame import SampleView
from dataengine.transport import FINGERPRINT_METADATA, TCP
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["EngineUnavailableError", "Fetcher"]

_LOG = logging.getLogger(__name__)
# Codes after which another engine may well succeed. CANCELLED counts only
# when the client did not cancel the call itself (e.g. a drain's grace ran out).
_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_POLL_S = 0.25  # longest a batch thread sleeps without a reason to wake
_T = TypeVar("_T")


class EngineUnavailableError(DataEngineError, ConnectionError):
    """No engine could serve a request; the message lists the endpoints tried."""

    kind = "unavailable"


class _Refused(Exception):
    """A stream stated another manifest fingerprint than the fleet's."""


def status_error(exc: grpc.RpcError, endpoint: str) -> DataEngineError:
    """A non-retryable gRPC error as the project's error type."""
    code, details = exc.code(), exc.details()
    message = f"{endpoint}: {code.name}: {details}"
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(message)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ConfigError("request", message)
    return DataEngineError(message)


@dataclass(eq=False)
class _Call:
    """One ``StreamSamples`` call of a batch. Guarded by its batch's lock."""

    endpoint: str
    ids: list[int]
    hedge: bool
    opened: float | None = None  # monotonic seconds
    progress: float | None = None  # last message (or the open)
    rpc: grpc.Call | None = None
    got: int = 0  # samples this call delivered (kept or dropped)
    done: bool = False
    cancelled: bool = False  # by the client: loser, stall or close
    stalled: bool = False
    hedged: bool = False  # a hedge was sent for its missing ids


@dataclass(eq=False)
class _Batch:
    """The state of one micro-batch being fetched."""

    epoch: int
    wanted: list[int]
    index: int
    cond: threading.Condition = field(default_factory=threading.Condition)
    received: dict[int, Received] = field(default_factory=dict)
    calls: list[_Call] = field(default_factory=list)
    error: BaseException | None = None
    need: int = field(init=False)  # distinct ids: the batch is complete at this many

    def __post_init__(self) -> None:
        self.need = len(set(self.wanted))

    def missing(self) -> list[int]:
        return [i for i in self.wanted if i not in self.received]


class Fetcher:
    """Fetches micro-batches from the fleet; shared by the batch threads.
    ``shard_of`` maps sample ids to shard ids; ``dataset`` names the dataset;
    ``max_engines`` bounds the engines one batch may stream from at once
    (default: the configured endpoints; a discovered fleet passes more)."""

    def __init__(
        self,
        config: ClientConfig,
        fleet: Fleet,
        stats: ClientStats,
        dataset: str,
        shard_of: Callable[[list[int]], list[int]],
        max_engines: int | None = None,
    ) -> None:
        self._cfg = config
        self._fleet = fleet
        self._stats = stats
        self._dataset = dataset
        self._shard_of = shard_of
        self._pipeline = config.pipeline.to_proto()
        self._lock = threading.Lock()
        self._batches: set[_Batch] = set()
        self._closed = False
        # Per in-flight batch: a stream per engine plus as many hedges or
        # failovers; threads are started only when needed, up to this bound.
        engines = len(config.endpoints) if max_engines is None else max_engines
        limit = 2 * config.prefetch_batches * (engines + 2)
        self._pool = cf.ThreadPoolExecutor(max_workers=limit, thread_name_prefix="engine-call")
        self.receiver = Receiver(config, fleet, stats, self._pool)

    # -- routing -----------------------------------------------------------

    def _route(self, ids: list[int], index: int, exclude: set[str]) -> dict[str, list[int]]:
        """Ids grouped by the live engine that should serve them, skipping
        ``exclude``: each shard's first-ranked live owner, or (without
        ownership) one engine for all, round-robin by batch ``index``."""
        live = [e for e in self._fleet.live() if e not in exclude]
        if not live:
            return {}
        if not self._cfg.ownership:
            return {live[index % len(live)]: list(ids)}
        groups: dict[str, list[int]] = {}
        for sid, shard in zip(ids, self._shard_of(ids), strict=True):
            owner = next((e for e in self._fleet.ranked(shard) if e not in exclude), None)
            if owner is not None:
                groups.setdefault(owner, []).append(sid)
        return groups

    # -- one batch ---------------------------------------------------------

    def fetch(
        self,
        epoch: int,
        ids: np.ndarray,
        index: int,
        collate: Callable[[list[Received]], _T],
    ) -> _T:
        """``collate`` of the samples of ``ids`` (in that order), each
        exactly once; the shared-memory slots they hold are released when
        ``collate`` returns (it must copy what it keeps)."""
        batch = _Batch(epoch, [int(i) for i in ids.tolist()], index)
        with self._lock:
            if self._closed:
                raise EngineUnavailableError("UNAVAILABLE: the client is closed")
            self._batches.add(batch)
        try:
            return collate(self._fetch(batch))
        finally:
            with self._lock:
                self._batches.discard(batch)
            with batch.cond:
                for call in batch.calls:
                    if call.got < len(call.ids):  # a loser; a finished one ends by itself
                        self._cancel(call)
                for item in batch.received.values():
                    item.release()

    def _fetch(self, batch: _Batch) -> list[Received]:
        cfg = self._cfg
        stuck_since: float | None = None
        with batch.cond:
            while True:
                if batch.error is not None:
                    raise batch.error
                if self._closed:
                    raise EngineUnavailableError("UNAVAILABLE: the client was closed")
                missing = batch.missing()
                if not missing:
                    return [batch.received[i] for i in batch.wanted]
                now = time.monotonic()
                covered = {i for c in batch.calls if not c.done for i in c.ids}
                # Each id at most once per call: engines refuse duplicates.
                uncovered = list(dict.fromkeys(i for i in missing if i not in covered))
                if uncovered:
                    groups = self._route(uncovered, batch.index, set())
                    if groups:
                        stuck_since = None
                        self._open_all(batch, groups, hedge=False, failover=bool(batch.calls))
                    else:
                        stuck_since = stuck_since or now
                        if now - stuck_since >= cfg.unavailable_timeout_s:
                            raise self._unavailable(missing)
                wake = now + _POLL_S if uncovered else now + 1.0
                if cfg.hedge_after_s:
                    wake = min(wake, self._hedge(batch, now))
                batch.cond.wait(max(0.0, wake - time.monotonic()))

    def _unavailable(self, missing: list[int]) -> EngineUnavailableError:
        endpoints = self._fleet.endpoints()
        self._stats.event("unavailable", ",".join(endpoints), f"{len(missing)} samples")
        return EngineUnavailableError(
            f"UNAVAILABLE: {len(missing)} samples (first {missing[:4]}) could not be fetched: "
            f"no engine was live for {self._cfg.unavailable_timeout_s}s; "
            f"endpoints: {', '.join(endpoints)}"
        )

    def _hedge(self, batch: _Batch, now: float) -> float:
        """Send hedges for calls running longer than ``hedge_after_s``; return
        the next time a hedge may be due. Called with the batch lock held."""
        after = float(self._cfg.hedge_after_s or 0)
        wake = now + _POLL_S * 4
        for call in list(batch.calls):
            if call.done or call.hedge or call.hedged or call.opened is None:
                continue
            due = call.opened + after
            if now < due:
                wake = min(wake, due)
                continue
            call.hedged = True
            ids = [i for i in call.ids if i not in batch.received]
            if not ids:
                continue
            busy = {c.endpoint for c in batch.calls if not c.done and set(c.ids) & set(ids)}
            groups = self._route(ids, batch.index + 1, busy)
            if groups:
                self._open_all(batch, groups, hedge=True, failover=False)
                self._stats.count("hedges", len(groups))
                for endpoint, group in groups.items():
                    self._stats.event(
                        "hedge", endpoint, f"{len(group)} samples slow on {call.endpoint}"
                    )
                _LOG.info(
                    "stream to %s slow for %.1fs: hedged %d samples on %s",
                    call.endpoint,
                    now - call.opened,
                    len(ids),
                    ",".join(groups),
                )
        return wake

    def _open_all(
        self, batch: _Batch, groups: dict[str, list[int]], hedge: bool, failover: bool
    ) -> None:
        for endpoint, ids in groups.items():
            call = _Call(endpoint, ids, hedge)
            batch.calls.append(call)
            if failover:
                self._stats.count("failovers")
                self._stats.event("failover", endpoint, f"{len(ids)} samples re-asked")
                _LOG.warning("failover: asking %s for %d samples", endpoint, len(ids))
            self._pool.submit(self._run, batch, call)

    def _run(self, batch: _Batch, call: _Call) -> None:
        """One stream (call-pool thread). An engine that failed is marked
        dead before the call counts as done, so its ids are re-routed to
        another engine, never back to it."""
        try:
            failure = self._stream(batch, call)
            if failure:
                with batch.cond:
                    got = sum(1 for i in call.ids if i in batch.received)
                _LOG.warning(
                    "stream to %s ended after %d of %d samples: %s",
                    call.endpoint,
                    got,
                    len(call.ids),
                    failure,
                )
                self._fleet.mark_dead(call.endpoint, failure)
                self.receiver.drop(call.endpoint, f"engine not routable: {failure}")
        finally:
            with batch.cond:
                call.done = True
                batch.cond.notify_all()

    def _stream(self, batch: _Batch, call: _Call) -> str:
        """Read one stream into the batch; return why it failed ("" if it
        did not, or if the client cancelled it)."""
        slots = self.receiver.slots_for(call.endpoint, call.ids)
        request = pb.SampleRequest(
            dataset=self._dataset,
            pipeline=self._pipeline,
            seed=self._cfg.seed,
            epoch=batch.epoch,
            sample_ids=call.ids,
            shared=None if slots is None else slots.message(call.ids),
        )
        try:
            with batch.cond:
                if call.cancelled or self._closed:
                    return ""
                stream = self._fleet.frames(call.endpoint)(
                    request,
                    timeout=self._cfg.call_timeout_s,
                    metadata=(self._stats.demand.header(),),
                )
                call.rpc = stream
                call.opened = call.progress = time.monotonic()
            kept: set[int] = set()
            try:
                unreadable = self._read(batch, call, stream, slots, kept)
            finally:
                if slots is not None:  # the slots whose frame this call did not deliver
                    slots.link.release(s for i, s in slots.slot_of.items() if i not in kept)
        except _Refused as exc:
            self._fleet.refuse(call.endpoint, str(exc))
            with batch.cond:
                self._cancel(call)  # its ids are asked from the fleet's engines
            return ""
        except LinkFailure as exc:
            assert slots is not None  # only a request with slots reads link frames
            self.receiver.link_failed(call.endpoint, slots.link.transport, str(exc))
            with batch.cond:
                self._cancel(call)  # its missing ids are asked again, inside the messages
            return ""
        except grpc.RpcError as exc:
            code = exc.code()
            if call.stalled:
                return "stalled: no sample within the stall timeout or the health probe"
            if call.cancelled:
                return ""  # the client cancelled it: a hedge loser, or close()
            if code in _RETRYABLE:
                return f"{code.name}: {exc.details()}"
            with batch.cond:
                batch.error = status_error(exc, call.endpoint)
            return ""
        except BaseException as exc:  # surface anything else in the consumer
            with batch.cond:
                batch.error = exc
            return ""
        with batch.cond:
            missing = [i for i in call.ids if i not in batch.received]
            if call.cancelled or not missing:
                return ""
            if len(missing) > unreadable:
                return "the stream ended without all its samples"
            # The engine answered every id; the ones missing came as frames
            # whose id could not be read. Asking again would get the same.
            for sid in missing:
                message = f"an unreadable frame from {call.endpoint} took its place"
                lost = SampleView(sid, error=("data_loss", message))
                batch.received[sid] = Received(Frame(b"", lost), TCP, 0)
            if len(batch.received) == batch.need:
                batch.cond.notify_all()
        return ""

    def _read(
        self, batch: _Batch, call: _Call, stream: grpc.Call, slots: Slots | None, kept: set[int]
    ) -> int:
        """Receive the stream's samples into the batch (``kept``: the ids it
        delivered first, whose slots the batch now holds); return how many
        messages were frames without a readable sample id. The CPU this thread
        spends receiving (gRPC reads on this thread: the channels are
        single-threaded for streams) and reading frames is counted per
        transport."""
        wanted = set(call.ids)
        unreadable = 0
        cpu = time.thread_time()
        stated: str | None = None
        for raw in stream:
            if stated is None:  # the initial metadata came before the first message
                metadata = dict(stream.initial_metadata() or ())
                stated = str(metadata.get(FINGERPRINT_METADATA, ""))
                reason = self._fleet.mismatch(call.endpoint, stated)
                if reason is not None:
                    raise _Refused(reason)
            item = self.receiver.receive(call.endpoint, raw, slots)
            with batch.cond:
                call.progress = time.monotonic()
                call.got += 1
                if item is None:
                    unreadable += 1
                    continue
                sid = item.sample_id
                if sid in batch.received or sid not in wanted:
                    self._stats.count("duplicates_dropped")
                    item.release()
                    continue
                batch.received[sid] = item
                kept.add(sid)
                if call.hedge:
                    self._stats.count("hedged_samples")
                # Only completion wakes the batch thread: an arrival never
                # uncovers ids (a call's end does, and notifies in ``_run``).
                if len(batch.received) == batch.need:
                    batch.cond.notify_all()
            now = time.thread_time()
            self._stats.add_receive(item.transport, 1, item.nbytes, now - cpu)
            cpu = now
        return unreadable

    @staticmethod
    def _cancel(call: _Call) -> None:
        """Cancel ``call`` if it is still open (its batch's lock held)."""
        if not call.done and not call.cancelled:
            call.cancelled = True
            if call.rpc is not None:
                call.rpc.cancel()

    # -- monitor -----------------------------------------------------------

    def busy(self, endpoint: str) -> bool:
        """Whether a call to ``endpoint`` is still open."""
        with self._lock:
            batches = list(self._batches)
        for batch in batches:
            with batch.cond:
                if any(c.endpoint == endpoint and not c.done for c in batch.calls):
                    return True
        return False

    def check_stalls(
        self, now: float, endpoint: str | None = None, idle_s: float | None = None
    ) -> None:
        """Cancel (as stalled) the calls that delivered nothing for
        ``idle_s`` seconds (default ``stall_timeout_s``), to ``endpoint``
        only if given."""
        idle_s = self._cfg.stall_timeout_s if idle_s is None else idle_s
        with self._lock:
            batches = list(self._batches)
        for batch in batches:
            with batch.cond:
                for call in batch.calls:
                    if call.done or call.cancelled or call.progress is None:
                        continue
                    if endpoint is not None and call.endpoint != endpoint:
                        continue
                    if now - call.progress >= idle_s:
                        call.stalled = True
                        self._stats.count("stalls")
                        self._stats.event("stall", call.endpoint, f"{len(call.ids)} samples")
                        self._cancel(call)

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Cancel every open call, wake the batch threads, join the calls."""
        with self._lock:
            self._closed = True
            batches = list(self._batches)
        for batch in batches:
            with batch.cond:
                for call in batch.calls:
                    self._cancel(call)
                batch.cond.notify_all()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.receiver.close()
