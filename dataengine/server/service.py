"""The ``dataengine.v1.DataEngine`` servicer.

``StreamSamples`` returns already-serialized ``Sample`` bytes produced by the
worker pool; the method handler is registered with an identity serializer
(see ``app.py``), so tensor bytes are never decoded or re-encoded here.

A stream claims all its ids in the tiers when it arrives: each sample's
source is found in one lookup (L0, a prepared view, the decode cache, the
source shard: ``dataengine/tiers/stack.py``), and the L1 fills its shards
need start at once (the prefetch). It then keeps ``window`` ready samples in
the pool and produces up to ``ahead`` more into L0. Every served sample is
counted once by the source of its prefix.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, NoReturn

import grpc

from dataengine.demand import DEMAND_METADATA, parse_demand
from dataengine.errors import DataEngineError
from dataengine.pipeline.spec import PipelineSpec
from dataengine.prepared import source_fingerprint
from dataengine.server.channel import ChannelTarget, DataChannels
from dataengine.server.pool import WorkerPool
from dataengine.server.requests import resolve_dataset, resolve_pipeline, validate_sample_ids
from dataengine.server.shm import SharedSegments, SharedTarget
from dataengine.server.stats import StatsRecorder
from dataengine.server.tasks import SampleTask, TaskResult
from dataengine.server.usage import TaskUsage
from dataengine.shards import Manifest
from dataengine.tiers.stack import Claim, Fetch, TierStack
from dataengine.transport import DATA_CHANNEL, FINGERPRINT_METADATA, SHARED_MEMORY, TCP
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["DataEngineServicer"]

_LOG = logging.getLogger(__name__)
_POLL_S = 0.5


def _prefix_seconds(result: TaskResult) -> float:
    """What producing the sample's prefix cost (read + decompress + decode)."""
    return sum(result.timings.get(stage, 0.0) for stage in ("read", "decompress", "decode"))


def _usage(result: TaskResult, source: str, served: bool) -> TaskUsage:
    """What a finished task cost the workers, for the capacity signal."""
    return TaskUsage(result.submitted, result.started, result.finished, result.cpu, source, served)


def _task(
    args: tuple[str, int, PipelineSpec, int, int],
    fetch: Fetch,
    *,
    want_prefix: bool = False,
    prefix_only: bool = False,
    shared: tuple[str, int, int] | None = None,
) -> SampleTask:
    """The worker's task for one sample: what it reads (``fetch``) and what
    it hands back."""
    return SampleTask(
        *args,
        shard=fetch.shard,
        prefix_blob=fetch.prefix_blob,
        want_prefix=want_prefix,
        prefix_only=prefix_only,
        prepared=fetch.prepared,
        cached=fetch.cached,
        cache_to=fetch.cache_to,
        shared=shared,
    )


class EngineBusyError(DataEngineError):
    """The engine cannot serve right now (e.g. its worker pool is restarting)."""

    kind = "unavailable"


_STATUS = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "data_loss": grpc.StatusCode.DATA_LOSS,
}


class _Stream:
    """The state of one ``StreamSamples`` call between passes: the claims
    still to send (``todo``, request order), those in the pool
    (``inflight``), those produced ahead into L0 (``ahead``), and since when
    (monotonic seconds) no ready claim could be sent although the window had
    room (``stalled_since``)."""

    def __init__(
        self,
        pool: WorkerPool,
        tiers: TierStack,
        stats: StatsRecorder,
        window: int,
        ahead: int,
        *,
        dataset: str,
        spec: PipelineSpec,
        request: pb.SampleRequest,
        target: SharedTarget | ChannelTarget | None = None,
    ) -> None:
        """Claim every id of ``request`` in the tiers at once (each sample's
        source found, the shard fills it needs started). With ``target``,
        good samples go into the client's shared-memory slots (written by
        the workers) or onto its data channel (sent here), and the stream
        carries their references."""
        self._pool = pool
        self._tiers = tiers
        self._stats = stats
        self._window = window
        self._ahead_max = ahead
        self._dataset = dataset
        self._spec = spec
        self._seed, self._epoch = request.seed, request.epoch
        self._want_prefix = tiers.ram.budget_bytes > 0
        self._reserve = tiers.ram.cost(spec.prefix_bytes)
        self.todo: list[Claim] = tiers.claim(dataset, request.sample_ids, spec.prefix_key())
        self._target = target
        self._slot: dict[Claim, int] = (
            {} if target is None else dict(zip(self.todo, target.slots, strict=True))
        )
        self.inflight: dict[cf.Future[TaskResult], Claim] = {}
        self.ahead: dict[cf.Future[TaskResult], Claim] = {}
        self.decoding_ahead: set[Claim] = set()
        self.stalled_since: float | None = None
        # How far into the request each pass looks: the near future only, so a
        # request of thousands of ids costs O(window) per pass, not O(ids).
        self.horizon = 2 * window + ahead

    @property
    def busy(self) -> bool:
        """Claims are left to send or in the pool."""
        return bool(self.todo or self.inflight)

    def _args(self, claim: Claim) -> tuple[str, int, PipelineSpec, int, int]:
        return (self._dataset, claim.sample_id, self._spec, self._seed, self._epoch)

    def submit_ready(self) -> None:
        """Send ready claims to the pool, in request order, up to the window."""
        tiers, todo = self._tiers, self.todo
        submitted = False
        i = 0
        while i < min(len(todo), self.horizon) and len(self.inflight) < self._window:
            claim = todo[i]
            if claim in self.decoding_ahead or not tiers.ready(claim):
                i += 1
                continue
            del todo[i]
            fetch = tiers.fetch(claim, self.stalled_since)
            shared = None if self._target is None else self._target.task_target(self._slot[claim])
            task = _task(self._args(claim), fetch, want_prefix=self._want_prefix, shared=shared)
            self.inflight[self._pool.submit(task)] = claim
            submitted = True
        if submitted:
            self.stalled_since = None
        elif todo and len(self.inflight) < self._window and self.stalled_since is None:
            self.stalled_since = time.monotonic()

    def decode_ahead(self) -> None:
        """Produce into L0, up to ``ahead`` at once, what waits behind the window."""
        tiers = self._tiers
        for claim in self.todo[: self.horizon]:
            if len(self.ahead) >= self._ahead_max:
                break
            if claim not in self.decoding_ahead and tiers.start_ahead(claim, self._reserve):
                fetch = tiers.fetch(claim, look_in_ram=False)
                task = _task(self._args(claim), fetch, prefix_only=True)
                self.ahead[self._pool.submit(task)] = claim
                self.decoding_ahead.add(claim)

    def wait(self) -> set[cf.Future[Any]]:
        """Wait up to ``_POLL_S`` for a result, a decode ahead or a shard fill
        the near claims need; return the futures that finished."""
        waiting: set[cf.Future[Any]] = set(self.inflight) | set(self.ahead)
        for c in self.todo[: self.horizon]:
            pending = self._tiers.pending(c)
            if pending is not None:
                waiting.add(pending)
        done, _ = cf.wait(waiting, timeout=_POLL_S, return_when=cf.FIRST_COMPLETED)
        return done

    def settle(self, future: cf.Future[Any]) -> bytes | None:
        """Account for one finished future: a decode ahead goes into L0, a
        served sample is settled, stored and counted and its bytes returned
        to send (``None`` for anything else, e.g. a shard fill)."""
        tiers = self._tiers
        early = self.ahead.pop(future, None)
        if early is not None:
            result = future.result()
            self.decoding_ahead.discard(early)
            source = tiers.settle(early, result.report)
            tiers.finish_ahead(early, result.prefix_blob, _prefix_seconds(result), source)
            self._stats.add_stage_times(result.timings)
            self._stats.usage.add(_usage(result, source, served=False))
            return None
        served = self.inflight.pop(future, None)
        if served is None:
            return None  # a shard fill finished
        result = future.result()
        source = tiers.settle(served, result.report)
        tiers.done(served)
        if result.prefix_blob is not None:
            tiers.store(served, result.prefix_blob, _prefix_seconds(result))
        message, transport = result.sample_bytes, TCP
        if self._target is not None:
            slot = self._slot.pop(served)
            size = result.shared_size  # the worker wrote it into a shared slot
            if size:
                transport = SHARED_MEMORY
            elif isinstance(self._target, ChannelTarget) and result.error_kind is None:
                size = self._target.deliver(slot, result.sample_bytes)
                transport = DATA_CHANNEL if size else TCP
            self._target.done(slot)  # stored before the client can see the reference
            if size:
                ref = pb.SharedRef(slot=slot, size=size)
                message = pb.Sample(sample_id=served.sample_id, shared=ref).SerializeToString()
        # Counted before it is handed to gRPC: a client that has all it asked
        # for may cancel before the generator resumes after a yield.
        if result.error_kind is not None:
            self._stats.add_error(result.error_kind)
        else:
            self._stats.add_served(1, result.shared_size or len(result.sample_bytes))
            self._stats.add_source(self._dataset, source)
            self._stats.add_transport(transport)
        self._stats.add_stage_times(result.timings)
        self._stats.usage.add(_usage(result, source, served=result.error_kind is None))
        return message

    def abandon(self) -> None:
        """Give back every claim not served (the stream ended or was
        cancelled); their shared slots are done once no worker writes them."""
        target = self._target
        for future, claim in [*self.inflight.items(), *self.ahead.items()]:
            future.cancel()
            self._tiers.abandon(claim)
        for claim in self.todo:
            self._tiers.abandon(claim)
        if target is not None:
            for future, claim in self.inflight.items():
                target.done_when(future, self._slot.pop(claim))
            for slot in self._slot.values():
                target.done(slot)
            self._slot.clear()


class DataEngineServicer:
    """The three RPCs over one engine's datasets, pool, tiers and stats.
    ``window`` is how many samples of one stream may be in the pool at once;
    ``ahead`` how many more of its requested samples may be decoded ahead
    into L0 meanwhile (0: none); ``max_ids`` how many ids one request may
    list (None: no bound)."""

    def __init__(
        self,
        manifests: dict[str, Manifest],
        pool: WorkerPool,
        tiers: TierStack,
        stats: StatsRecorder,
        window: int,
        ahead: int = 0,
        tokenizer_dir: Path | None = None,
        segments: SharedSegments | None = None,
        channels: DataChannels | None = None,
        max_ids: int | None = None,
    ) -> None:
        self._manifests = manifests
        # Stated by DescribeDataset and by every stream (initial metadata):
        # clients refuse an engine whose dataset differs from the fleet's.
        self._fingerprints = {n: source_fingerprint(m) for n, m in manifests.items()}
        self._max_ids = max_ids
        self._segments = segments
        self._channels = channels
        self._tokenizer_dir = tokenizer_dir
        self._pool = pool
        self._tiers = tiers
        self._stats = stats
        self._window = window
        self._ahead = ahead if tiers.ram.budget_bytes > 0 else 0
        self._active = 0
        self._active_lock = threading.Lock()
        stats.gauges["streams_active"] = lambda: self._active
        stats.gauges["worker_tasks_pending"] = lambda: pool.pending

    # -- helpers ---------------------------------------------------------

    def _fail(self, context: grpc.ServicerContext, exc: DataEngineError) -> NoReturn:
        """Abort the RPC with the status that matches ``exc`` (counted by kind)."""
        self._stats.add_error(exc.kind)
        code = _STATUS.get(exc.kind, grpc.StatusCode.INTERNAL)
        context.abort(code, str(exc))
        raise AssertionError("unreachable: context.abort raises")

    def _fingerprint(self, manifest: Manifest) -> str:
        """The manifest fingerprint this engine states for ``manifest``."""
        known = self._fingerprints.get(manifest.name)
        return known if known is not None else source_fingerprint(manifest)

    def _note_demand(self, context: grpc.ServicerContext) -> None:
        """Keep the client's demand report, if its call carries one."""
        for key, value in context.invocation_metadata() or ():
            if key == DEMAND_METADATA and isinstance(value, str):
                report = parse_demand(value)
                if report is not None:
                    self._stats.usage.add_demand(*report, peer=context.peer())
                return

    def _target(self, request: pb.SampleRequest) -> SharedTarget | ChannelTarget | None:
        """Where the request's samples go besides the stream: its segment's
        slots, its data channel, or nowhere (None: inline)."""
        if not request.HasField("shared"):
            return None
        ids = len(request.sample_ids)
        if request.shared.segment and self._segments is not None:
            return self._segments.target(request.shared, ids)
        if request.shared.channel and self._channels is not None:
            return self._channels.target(request.shared, ids)
        return None

    # -- RPCs ------------------------------------------------------------

    def StreamSamples(
        self, request: pb.SampleRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        try:
            manifest = resolve_dataset(request.dataset, self._manifests)
            spec = resolve_pipeline(request.pipeline, self._tokenizer_dir)
            validate_sample_ids(request.sample_ids, manifest, self._max_ids)
            target = self._target(request)
        except DataEngineError as exc:
            self._fail(context, exc)
        context.send_initial_metadata(((FINGERPRINT_METADATA, self._fingerprint(manifest)),))
        self._note_demand(context)
        cancelled = threading.Event()
        context.add_callback(cancelled.set)
        self._stats.add_stream()
        with self._active_lock:
            self._active += 1
        try:
            yield from self._stream(manifest.name, spec, request, cancelled, target)
        except BrokenProcessPool as exc:
            self._pool.recover()
            self._fail(
                context,
                EngineBusyError(f"a decode worker died ({exc}); the pool was restarted, retry"),
            )
        finally:
            with self._active_lock:
                self._active -= 1

    def _stream(
        self,
        dataset: str,
        spec: PipelineSpec,
        request: pb.SampleRequest,
        cancelled: threading.Event,
        target: SharedTarget | ChannelTarget | None,
    ) -> Iterator[bytes]:
        """Serve ``request``'s ids: claim them in the tiers at once (each
        sample's source found, shard fills started), then in passes send up
        to ``window`` ready ones to the pool, produce up to ``ahead`` more
        into L0, wait, and yield results as they finish."""
        stream = _Stream(
            self._pool,
            self._tiers,
            self._stats,
            self._window,
            self._ahead,
            dataset=dataset,
            spec=spec,
            request=request,
            target=target,
        )
        try:
            while stream.busy and not cancelled.is_set():
                stream.submit_ready()
                stream.decode_ahead()
                for future in stream.wait():
                    sample = stream.settle(future)
                    if sample is None:
                        continue
                    t0 = time.perf_counter()
                    yield sample
                    self._stats.add_stage_times({"send": time.perf_counter() - t0})
        finally:
            stream.abandon()

    def GetStats(
        self, request: pb.GetStatsRequest, context: grpc.ServicerContext
    ) -> pb.EngineStats:
        return self._stats.snapshot()

    def DescribeDataset(
        self, request: pb.DescribeDatasetRequest, context: grpc.ServicerContext
    ) -> pb.DatasetInfo:
        try:
            m = resolve_dataset(request.dataset, self._manifests)
        except DataEngineError as exc:
            self._fail(context, exc)
        return pb.DatasetInfo(
            name=m.name,
            num_samples=m.num_samples,
            schema_version=m.schema_version,
            created_utc=m.created_utc,
            shards=[
                pb.ShardInfo(
                    shard_id=s.shard_id,
                    file=s.file,
                    first_sample_id=s.first_sample_id,
                    num_samples=s.num_samples,
                    size_bytes=s.size_bytes,
                    sha256=s.sha256,
                )
                for s in m.shards
            ],
            manifest_json=m.to_json(),
            fingerprint=self._fingerprint(m),
        )
