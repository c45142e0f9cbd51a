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

import grpc

from dataengine.errors import ConfigError
from dataengine.pipeline.spec import PipelineSpec
from dataengine.server.pool import WorkerPool
from dataengine.server.stats import StatsRecorder
from dataengine.server.tasks import TaskResult
from dataengine.shards import Manifest
from dataengine.tiers.ram import RamCache
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["DataEngineServicer"]

_LOG = logging.getLogger(__name__)
_POLL_S = 0.5


class DataEngineServicer:
    def __init__(
        self,
        manifests: dict[str, Manifest],
        pool: WorkerPool,
        cache: RamCache,
        stats: StatsRecorder,
        window: int,
    ) -> None:
        self._manifests = manifests
        self._pool = pool
        self._cache = cache
        self._stats = stats
        self._window = window
        self._active = 0
        self._active_lock = threading.Lock()
        stats.gauges["streams_active"] = lambda: self._active
        stats.gauges["worker_tasks_pending"] = lambda: pool.pending

    # -- helpers ---------------------------------------------------------

    def _manifest(self, name: str, context: grpc.ServicerContext) -> Manifest:
        if not name and len(self._manifests) == 1:
            return next(iter(self._manifests.values()))
        manifest = self._manifests.get(name)
        if manifest is None:  # context.abort raises
            self._stats.add_error("not_found")
            served = ", ".join(sorted(self._manifests)) or "none"
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"dataset {name!r} is not served by this engine (serving: {served})",
            )
            raise AssertionError("unreachable: context.abort raises")
        return manifest

    def _invalid(self, context: grpc.ServicerContext, message: str) -> None:
        self._stats.add_error("invalid_argument")
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)

    # -- RPCs ------------------------------------------------------------

    def StreamSamples(
        self, request: pb.SampleRequest, context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        manifest = self._manifest(request.dataset, context)
        try:
            spec = PipelineSpec.from_proto(request.pipeline)
        except ConfigError as exc:
            self._invalid(context, str(exc))
        n = manifest.num_samples
        for i, sid in enumerate(request.sample_ids):
            if sid >= n:
                self._invalid(
                    context,
                    f"sample_ids[{i}]: {sid} is out of range; dataset {manifest.name!r} "
                    f"has sample ids 0..{n - 1}",
                )
        cancelled = threading.Event()
        context.add_callback(cancelled.set)
        self._stats.add_stream()
        with self._active_lock:
            self._active += 1
        try:
            yield from self._stream(manifest.name, spec, request, cancelled)
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
        todo = collections.deque(request.sample_ids)
        inflight: set[cf.Future[TaskResult]] = set()
        try:
            while (todo or inflight) and not cancelled.is_set():
                while todo and len(inflight) < self._window:
                    sid = todo.popleft()
                    blob = self._cache.get((dataset, sid, prefix_key))
                    inflight.add(
                        self._pool.submit(dataset, sid, spec, request.seed, request.epoch, blob)
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
        m = self._manifest(request.dataset, context)
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
