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
    long samples may stay unfetchable (every engine down) before the client
    gives up; ``max_consecutive_lost`` is the failure budget: that many
    samples in a row that engines report as lost raise ``DataLossError``
    (a systematic fault, not a bad record)."""

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
        for name in ("connect_timeout_s", "call_timeout_s", "unavailable_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"must be > 0 seconds, got {getattr(self, name)}")

    @classmethod
    def create(cls, endpoints: Sequence[str] | str, **kwargs: Any) -> ClientConfig:
        return cls(endpoints=parse_endpoints(endpoints), **kwargs)
