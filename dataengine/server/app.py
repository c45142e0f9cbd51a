"""Assemble an engine: worker pool + storage tiers (L0 RAM, L1 disk, the
decode cache L1d, the prepared views and L2 the dataset) + gRPC server with
reflection, health checking and (optionally) a Prometheus endpoint."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from dataengine.audit import AuditLog
from dataengine.errors import ConfigError
from dataengine.prepared import find_views, source_fingerprint
from dataengine.security.tls import ServerTLS
from dataengine.server.channel import DataChannels
from dataengine.server.config import ServerConfig
from dataengine.server.drain import DrainGate
from dataengine.server.gate import AccessGate
from dataengine.server.metrics import MetricsServer
from dataengine.server.pool import WorkerPool
from dataengine.server.service import DataEngineServicer
from dataengine.server.shm import SharedSegments
from dataengine.server.stats import PrometheusCollector, StatsRecorder
from dataengine.shards import Manifest
from dataengine.shm import sweep_stale
from dataengine.tiers.decoded import DecodeCache, default_decode_budget
from dataengine.tiers.disk import DiskCache, default_disk_budget
from dataengine.tiers.prepared import PreparedTier, View
from dataengine.tiers.ram import RamCache
from dataengine.tiers.shared import SharedTier
from dataengine.tiers.stack import TierStack
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["GRPC_OPTIONS", "SERVICE_NAME", "EngineServer", "create_server"]

_LOG = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DataEngine"].full_name
_MAX_MESSAGE_BYTES = 256 << 20
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    # gRPC enables SO_REUSEPORT by default: a second engine on a taken port
    # would bind and silently split the traffic. Fail loudly instead.
    ("grpc.so_reuseport", 0),
]


def _rpc_threads(workers: int) -> int:
    """gRPC threads: each open stream holds one for its lifetime, so leave
    plenty for many trainer ranks plus health checks and GetStats."""
    return max(64, 8 * workers)


def _server_options(max_ids: int) -> list[tuple[str, int]]:
    """The engine's gRPC options: requests are small (ids, a pipeline, slot
    numbers), so gRPC refuses one larger than the id cap allows before any
    of it is parsed (RESOURCE_EXHAUSTED)."""
    request_bytes = max(4 << 20, 32 * max_ids + (1 << 20))
    options = [(k, v) for k, v in GRPC_OPTIONS if k != "grpc.max_receive_message_length"]
    return [*options, ("grpc.max_receive_message_length", request_bytes)]


def _identity(data: bytes) -> bytes:
    return data


def _handlers(
    servicer: DataEngineServicer, segments: SharedSegments, channels: DataChannels
) -> grpc.GenericRpcHandler:
    methods = {
        "StreamSamples": grpc.unary_stream_rpc_method_handler(
            servicer.StreamSamples,
            request_deserializer=pb.SampleRequest.FromString,
            response_serializer=_identity,
        ),
        "GetStats": grpc.unary_unary_rpc_method_handler(
            servicer.GetStats,
            request_deserializer=pb.GetStatsRequest.FromString,
            response_serializer=pb.EngineStats.SerializeToString,
        ),
        "DescribeDataset": grpc.unary_unary_rpc_method_handler(
            servicer.DescribeDataset,
            request_deserializer=pb.DescribeDatasetRequest.FromString,
            response_serializer=pb.DatasetInfo.SerializeToString,
        ),
        "AttachSharedMemory": grpc.unary_stream_rpc_method_handler(
            segments.Attach,
            request_deserializer=pb.AttachRequest.FromString,
            response_serializer=pb.AttachReply.SerializeToString,
        ),
        "OpenDataChannel": grpc.unary_stream_rpc_method_handler(
            channels.Open,
            request_deserializer=pb.DataChannelRequest.FromString,
            response_serializer=pb.DataChannelReply.SerializeToString,
        ),
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, methods)


def _load_manifests(roots: tuple[Path, ...]) -> tuple[dict[str, Manifest], dict[str, Path]]:
    manifests: dict[str, Manifest] = {}
    paths: dict[str, Path] = {}
    for root in roots:
        manifest = Manifest.load(root)
        if manifest.name in manifests:
            raise ConfigError("server.datasets", f"two datasets are named {manifest.name!r}")
        manifests[manifest.name] = manifest
        paths[manifest.name] = Path(root).resolve()
    return manifests, paths


def _find_views(
    manifests: dict[str, Manifest], roots: dict[str, Path], on_source_read: Callable[[int], None]
) -> PreparedTier:
    """The servable prepared views of every dataset (stale ones are logged
    and skipped by ``find_views``)."""
    views: dict[str, dict[str, View]] = {}
    for name, manifest in manifests.items():
        found = find_views(roots[name], manifest)
        views[name] = {key: View.of(roots[name], m) for key, m in found.items()}
        for key, m in sorted(found.items()):
            _LOG.info(
                "dataset %s: prepared view %s (%d samples, %d bytes, %d recorded failures)",
                name,
                key,
                m.num_samples,
                m.size_bytes,
                len(m.failed),
            )
    return PreparedTier(views, on_source_read=on_source_read)


def _cache_budgets(config: ServerConfig, cache_dir: Path) -> tuple[int, int]:
    """The L1 and decode cache budgets in bytes, derived when not given."""
    decoded = config.decode_cache_bytes
    if decoded is None:
        decoded = default_decode_budget(cache_dir)
        _LOG.info("decode cache budget not given: %d bytes (25%% of the disk's room)", decoded)
    disk = config.disk_cache_bytes
    if disk is None:
        disk = max(0, default_disk_budget(cache_dir) - decoded)
        _LOG.info(
            "L1 budget not given: %d bytes (90%% of the disk's room less the decode cache's)",
            disk,
        )
    return disk, decoded


class EngineServer:
    """One engine. ``start()`` returns once workers are warm and the port is
    bound (``address`` gives the real port); ``stop(grace)`` drains."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.manifests, self._roots = _load_manifests(config.datasets)
        self.engine_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.stats = StatsRecorder(
            self.engine_id,
            config.worker_count,
            sorted(self.manifests),
            capacity_window_s=config.capacity_window_s,
        )
        self.cache = RamCache(config.ram_cache_bytes)
        self.shared = SharedTier(self.manifests, self._roots)
        self.disk: DiskCache | None = None
        self.decoded: DecodeCache | None = None
        self.views = _find_views(self.manifests, self._roots, self.shared.add_read)
        self.tiers = TierStack(self.cache, None, self.shared, self.views)
        self.stats.tiers = self.tiers.counters
        self.pool = WorkerPool(config.worker_count, config.test_task_delay_s)
        self.segments = SharedSegments(self.engine_id, enabled=config.shared_memory)
        self.tls: ServerTLS | None = None
        if config.tls_cert is not None and config.tls_key is not None:
            self.tls = ServerTLS(config.tls_cert, config.tls_key, config.tls_client_ca)
        self.channels = DataChannels(config.host, config.data_port, self.tls)
        self.stats.shared_segments = lambda: self.segments.count
        self.stats.data_channels = lambda: self.channels.count
        self.health = health.HealthServicer()
        self._drain = DrainGate(f"/{SERVICE_NAME}/StreamSamples")
        self.audit: AuditLog | None = None
        self.gate = AccessGate(
            SERVICE_NAME,
            sorted(self.manifests),
            auth_file=config.auth_file,
            max_streams=config.stream_limit,
            max_streams_per_principal=config.principal_stream_limit,
            max_ids=config.max_ids_per_request,
        )
        self.stats.insecure = config.insecure
        self._server: grpc.Server | None = None
        self._metrics: MetricsServer | None = None
        self.port = 0
        self.metrics_port: int | None = None

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    def start(self) -> EngineServer:
        """Start workers, gRPC and metrics; on any failure, undo what started."""
        try:
            return self._start()
        except BaseException:
            self.stop(grace=0)
            raise

    def _start(self) -> EngineServer:
        self.views.start()
        if self.config.cache_dir is not None:
            budget, decoded_budget = _cache_budgets(self.config, self.config.cache_dir)
            self.disk = DiskCache(
                self.config.cache_dir,
                budget,
                fill_threads=self.config.fill_threads,
                on_source_read=self.shared.add_read,
            ).start()
            self.tiers.disk = self.disk
            if decoded_budget > 0:
                fingerprints = {n: source_fingerprint(m) for n, m in self.manifests.items()}
                self.decoded = DecodeCache(self.config.cache_dir, decoded_budget, fingerprints)
                self.tiers.decoded = self.decoded.start()
        self.pool.start()
        servicer = DataEngineServicer(
            self.manifests,
            self.pool,
            self.tiers,
            self.stats,
            self.config.window,
            self.config.ahead,
            self.config.tokenizer_dir,
            self.segments if self.config.shared_memory else None,
            self.channels.start() if self.config.data_channel else None,
            self.config.max_ids_per_request,
        )
        if self.config.audit_log is not None:
            self.audit = AuditLog.open(self.config.audit_log, self.config.audit_durability)
            self.gate.audit = self.audit
        if self.config.shared_memory:
            sweep_stale()  # segments of clients and engines that died on this host
        server = grpc.server(
            futures.ThreadPoolExecutor(
                # Long-lived calls are capped below the thread count, so health
                # checks and short calls always find a thread.
                max_workers=max(
                    _rpc_threads(self.config.worker_count), self.config.stream_limit + 16
                ),
                thread_name_prefix="grpc",
            ),
            options=_server_options(self.config.max_ids_per_request),
            interceptors=(self.gate, self._drain),
        )
        server.add_generic_rpc_handlers((_handlers(servicer, self.segments, self.channels),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self._server = server
        address = f"{self.config.host}:{self.config.port}"
        try:
            if self.tls is not None:
                self.port = server.add_secure_port(address, self.tls.grpc_credentials())
            else:
                self.port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ConfigError("server.port", f"cannot bind {address} (in use?): {exc}") from None
        server.start()
        if self.config.metrics_port is not None:
            registry = CollectorRegistry()
            registry.register(PrometheusCollector(self.stats))
            self._metrics = MetricsServer(
                self.config.metrics_host or self.config.host,
                self.config.metrics_port,
                registry,
                self.tls,
            ).start()
            self.metrics_port = self._metrics.port
        for service in ("", SERVICE_NAME):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        _LOG.info(
            "engine %s serving %s on %s (workers=%d, L0 ram_cache=%d bytes, L1 %s, "
            "decode cache %s)",
            self.engine_id,
            ",".join(sorted(self.manifests)),
            self.address,
            self.config.worker_count,
            self.config.ram_cache_bytes,
            f"{self.disk.directory} ({self.disk.budget_bytes} bytes)" if self.disk else "off",
            f"{self.decoded.root} ({self.decoded.budget_bytes} bytes)" if self.decoded else "off",
        )
        if self.config.insecure:
            _LOG.warning(
                "engine %s started with --insecure: TLS %s, auth %s on %s; not for patient data",
                self.engine_id,
                "on" if self.tls is not None else "OFF",
                "on" if self.gate.auth_on else "OFF",
                self.address,
            )
        return self

    def reload(self) -> None:
        """SIGHUP: re-read the TLS certificate files. New connections (gRPC,
        data channel, metrics) get them; open ones keep theirs, so streams
        in flight go on. Files that do not load leave the old ones (logged)."""
        if self.tls is not None:
            self.tls.reload()
        self.gate.reload()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (True) or ``timeout`` seconds pass."""
        return self._server.wait_for_termination(timeout) if self._server else True

    def stop(self, grace: float | None = None) -> None:
        """Drain: health turns NOT_SERVING and new streams are refused with
        UNAVAILABLE (clients fail over), in-flight ones may finish for up to
        ``grace`` seconds (default: the config's); then stop the workers."""
        grace = self.config.grace_seconds if grace is None else grace
        deadline = time.monotonic() + grace
        self.health.enter_graceful_shutdown()
        self._drain.close()
        self.segments.stop()
        self.channels.stop()
        if self._server is not None:
            self._drain.wait_idle(grace)
            self._server.stop(max(0.0, deadline - time.monotonic())).wait()
            self._server = None
        if self._metrics is not None:
            self._metrics.stop()
            self._metrics = None
        self.pool.stop()
        if self.disk is not None:
            self.disk.stop()
        if self.decoded is not None:
            self.decoded.stop()
        self.views.stop()
        if self.audit is not None:  # after the server: every call's end is written
            self.audit.close()
            self.audit = None
        _LOG.info("engine %s stopped", self.engine_id)

    def __enter__(self) -> EngineServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def create_server(config: ServerConfig) -> EngineServer:
    """An engine for ``config``, not yet started."""
    return EngineServer(config)
