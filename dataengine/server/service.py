"""The ``dataengine.v1.DataEngine`` servicer.

``StreamSamples`` returns already-serialized ``Sample`` bytes produced by the
worker pool; the method handler is registered with an identity serializer
(see ``app.py``), so tensor bytes are never decoded or re-encoded here.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import NoReturn

import grpc

from dataengine.errors import DataEngineError
from dataengine.pipeline.spec import PipelineSpec
from dataengine.server.pool import WorkerPool
from dataengine.server.requests import resolve_dataset, resolve_pipeline, validate_sample_ids
from dataengine.server.stats import StatsRecorder
from dataengine.server.tasks import TaskResult
from dataengine.shards import Manifest
from dataengine.tiers.ram import RamCache
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["DataEngineServicer"]

_LOG = logging.getLogger(__name__)
_POLL_S = 0.5


class EngineBusyError(DataEngineError):
    """The engine cannot serve right now (e.g. its worker pool is restarting)."""

    kind = "unavailable"


_STATUS = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "data_loss": grpc.StatusCode.DATA_LOSS,
}


class DataEngineServicer:
    """The three RPCs over one engine's datasets, pool, L0 cache and stats.
    ``window`` is how many samples of one stream may be in the pool at once."""

    def __init__(
        self,
        manifests: dict[str, Manifest],
        pool: WorkerPool,
        cache: RamCache,
        stats: StatsRecorder,
        window: int,
        tokenizer_dir: Path | None = None,
    ) -> None:
        self._manifests = manifests
        self._tokenizer_dir = tokenizer_dir
        self._pool = pool
        self._cache = cache
        self._stats = stats
        self._window = window
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

    # -- RPCs ------------------------------------------------------------

    def StreamSamples(
        self, request: pb.SampleRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        try:
            manifest = resolve_dataset(request.dataset, self._manifests)
            spec = resolve_pipeline(request.pipeline, self._tokenizer_dir)
            validate_sample_ids(request.sample_ids, manifest)
        except DataEngineError as exc:
            self._fail(context, exc)
        cancelled = threading.Event()
        context.add_callback(cancelled.set)
        self._stats.add_stream()
        with self._active_lock:
            self._active += 1
        try:
            yield from self._stream(manifest.name, spec, request, cancelled)
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
    ) -> Iterator[bytes]:
        prefix_key = spec.prefix_key()
        cacheable = self._cache.budget_bytes > 0
        todo = collections.deque(request.sample_ids)
        inflight: set[cf.Future[TaskResult]] = set()
        try:
            while (todo or inflight) and not cancelled.is_set():
                while todo and len(inflight) < self._window:
                    sid = todo.popleft()
                    blob = self._cache.get((dataset, sid, prefix_key))
                    inflight.add(
                        self._pool.submit(
                            dataset, sid, spec, request.seed, request.epoch, blob, cacheable
                        )
                    )
                done, _ = cf.wait(inflight, timeout=_POLL_S, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    inflight.discard(future)
                    result = future.result()
                    if result.prefix_blob is not None:
                        self._cache.put((dataset, result.sample_id, prefix_key), result.prefix_blob)
                    if result.error_kind is not None:
                        self._stats.add_error(result.error_kind)
                    t0 = time.perf_counter()
                    yield result.sample_bytes
                    result.timings["send"] = time.perf_counter() - t0
                    self._stats.add_stage_times(result.timings)
                    if result.error_kind is None:
                        self._stats.add_served(1, len(result.sample_bytes))
        finally:
            for future in inflight:
                future.cancel()

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
        )
