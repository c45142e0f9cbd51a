"""Client configuration, validated on construction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dataengine.configs import check_int, check_range
from dataengine.discovery import DiscoverySettings, parse_source
from dataengine.errors import ConfigError
from dataengine.pipeline.spec import PipelineSpec
from dataengine.security.client import ClientSecurity

__all__ = ["ClientConfig", "parse_endpoints"]


def parse_endpoints(endpoints: Sequence[str] | str) -> tuple[str, ...]:
    """``"h1:1,h2:2"`` or a list -> a tuple of unique ``host:port`` strings;
    a ``dns:///NAME:PORT`` or ``file:///PATH`` source -> a tuple of just
    that source (``dataengine/discovery.py``)."""
    source = parse_source(endpoints)
    return (source.text,) if source.dynamic else source.endpoints


def _cuda_available() -> bool:
    import torch  # only a config that asks for pinning needs torch here

    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class ClientConfig(ClientSecurity, DiscoverySettings):
    """``batch_size`` is samples per micro-batch on this rank;
    ``prefetch_batches`` how many micro-batches are requested ahead (the
    credit window); timeouts are seconds: ``unavailable_timeout_s`` is how
    long samples may stay unfetchable (no live engine) before the client
    gives up; ``max_consecutive_lost`` is the failure budget: that many
    samples in a row that engines report as lost raise ``DataLossError``
    (a systematic fault, not a bad record).

    Fleet behaviour: with ``ownership`` each shard's samples go to its
    rendezvous owner among the live engines; without it each micro-batch
    goes whole to one live engine, round-robin (for comparisons).
    ``stall_timeout_s`` cancels a stream that delivered nothing for that
    long and treats its engine as dead; ``health_interval_s`` is how often
    every engine's ``grpc.health.v1`` status is probed (NOT_SERVING or no
    answer: not routable; SERVING again: routable again);
    ``hedge_after_s`` (None or 0: off) asks the next candidate engine for a
    stream's still-missing ids once it has run that long (first copy wins).

    Receiving: ``pin_memory`` builds batches in page-locked memory, for
    asynchronous copies to the GPU (None: when CUDA is available);
    ``shared_memory`` lets an engine on this host hand samples over through
    /dev/shm instead of TCP (automatic when it can open this client's
    segment; False: never); ``data_channel`` takes sample bytes from other
    engines on a plain TCP connection beside gRPC, which costs this host a
    fraction of gRPC's CPU per byte (False: inside the gRPC messages).

    Discovery: ``endpoints`` is a fixed list of ``HOST:PORT`` or one
    ``dns:///NAME:PORT`` or ``file:///PATH`` source, resolved again every
    ``discovery_interval_s`` seconds (keyword-only, from
    ``DiscoverySettings``; ``--discovery-interval``).

    Security: the keyword-only fields of ``ClientSecurity`` (``tls_ca``,
    ``tls_cert``, ``tls_key``), one flag each in the trainer and in
    ``dataengine digest`` and ``stats``."""

    endpoints: tuple[str, ...]
    dataset: str | None = None
    pipeline: PipelineSpec = field(default_factory=PipelineSpec)
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    batch_size: int = 4
    drop_last: bool = False
    prefetch_batches: int = 4
    connect_timeout_s: float = 30.0
    call_timeout_s: float = 300.0
    unavailable_timeout_s: float = 30.0
    max_consecutive_lost: int = 64
    ownership: bool = True
    stall_timeout_s: float = 10.0
    health_interval_s: float = 2.0
    hedge_after_s: float | None = None
    pin_memory: bool | None = None
    shared_memory: bool = True
    data_channel: bool = True

    def __post_init__(self) -> None:
        check_int(self.world_size, "client.world_size", 1)
        check_int(self.rank, "client.rank", 0, self.world_size - 1, note="below world_size")
        check_int(self.batch_size, "client.batch_size", 1)
        check_int(self.prefetch_batches, "client.prefetch_batches", 1)
        check_int(self.seed, "client.seed", 0)
        check_int(self.max_consecutive_lost, "client.max_consecutive_lost", 1)
        for name in (
            "connect_timeout_s",
            "call_timeout_s",
            "unavailable_timeout_s",
            "stall_timeout_s",
            "health_interval_s",
            "discovery_interval_s",
        ):
            check_range(getattr(self, name), f"client.{name}", 0, lo_open=True, unit="seconds")
        if self.pin_memory and not _cuda_available():
            raise ConfigError(
                "client.pin_memory", "needs CUDA (this torch sees no GPU); leave it unset"
            )
        if self.hedge_after_s is not None:
            check_range(self.hedge_after_s, "client.hedge_after_s", 0, unit="seconds (0: off)")
        super().__post_init__()

    @property
    def probe_timeout_s(self) -> float:
        """Seconds a health probe may take before the engine counts as not
        answering: the probe interval, within [1, 2] s and at most
        ``connect_timeout_s``."""
        return min(self.connect_timeout_s, max(1.0, min(2.0, self.health_interval_s)))

    @classmethod
    def create(cls, endpoints: Sequence[str] | str, **kwargs: Any) -> ClientConfig:
        return cls(endpoints=parse_endpoints(endpoints), **kwargs)
