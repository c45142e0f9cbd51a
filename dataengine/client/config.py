"""Client configuration, validated on construction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dataengine.errors import ConfigError
from dataengine.pipeline.spec import PipelineSpec

__all__ = ["ClientConfig", "parse_endpoints"]


def parse_endpoints(endpoints: Sequence[str] | str) -> tuple[str, ...]:
    """``"h1:1,h2:2"`` or a list -> a tuple of unique ``host:port`` strings."""
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out = tuple(dict.fromkeys(e.strip() for e in items if e.strip()))
    if not out:
        raise ConfigError("endpoints", "at least one HOST:PORT is required")
    for e in out:
        host, sep, port = e.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError("endpoints", f"{e!r} is not HOST:PORT")
    return out


@dataclass(frozen=True)
class ClientConfig:
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
    stream's still-missing ids once it has run that long (first copy wins)."""

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

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ConfigError("world_size", f"must be >= 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ConfigError("rank", f"must be within [0, {self.world_size}), got {self.rank}")
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"must be >= 1, got {self.batch_size}")
        if self.prefetch_batches < 1:
            raise ConfigError("prefetch_batches", f"must be >= 1, got {self.prefetch_batches}")
        if self.seed < 0:
            raise ConfigError("seed", f"must be >= 0, got {self.seed}")
        if self.max_consecutive_lost < 1:
            raise ConfigError(
                "max_consecutive_lost", f"must be >= 1, got {self.max_consecutive_lost}"
            )
        for name in (
            "connect_timeout_s",
            "call_timeout_s",
            "unavailable_timeout_s",
            "stall_timeout_s",
            "health_interval_s",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(name, f"must be > 0 seconds, got {getattr(self, name)}")
        if self.hedge_after_s is not None and not self.hedge_after_s >= 0:
            raise ConfigError(
                "hedge_after_s", f"must be >= 0 seconds (0 or None: off), got {self.hedge_after_s}"
            )

    @property
    def probe_timeout_s(self) -> float:
        """Seconds a health probe may take before the engine counts as not
        answering: the probe interval, within [1, 2] s and at most
        ``connect_timeout_s``."""
        return min(self.connect_timeout_s, max(1.0, min(2.0, self.health_interval_s)))

    @classmethod
    def create(cls, endpoints: Sequence[str] | str, **kwargs: Any) -> ClientConfig:
        return cls(endpoints=parse_endpoints(endpoints), **kwargs)
