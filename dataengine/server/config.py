"""Engine configuration (what ``dataengine serve`` flags set)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dataengine.errors import ConfigError

__all__ = ["ServerConfig"]

DEFAULT_RAM_CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class ServerConfig:
    """``port`` 0 binds an ephemeral port; ``workers`` decode processes
    (default: the core count); ``ram_cache_bytes`` is the L0 budget in bytes
    (0 disables it); ``metrics_port`` serves Prometheus text when set;
    ``stream_window`` is how many samples one stream keeps in the worker pool
    at once (default: 2 x workers); ``grace_seconds`` bounds draining on stop;
    ``tokenizer_dir`` holds the vocabulary files requests may name (by bare
    file name); without it only the byte tokenizer is offered."""

    datasets: tuple[Path, ...]
    host: str = "127.0.0.1"
    port: int = 50051
    workers: int = 0
    ram_cache_bytes: int = DEFAULT_RAM_CACHE_BYTES
    cache_dir: Path | None = None
    metrics_port: int | None = None
    stream_window: int = 0
    grace_seconds: float = 10.0
    tokenizer_dir: Path | None = None

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ConfigError("datasets", "at least one dataset directory is required")
        if not 0 <= self.port <= 65535:
            raise ConfigError("port", f"must be within [0, 65535], got {self.port}")
        if self.workers < 0:
            raise ConfigError("workers", f"must be >= 0 (0 = core count), got {self.workers}")
        if self.ram_cache_bytes < 0:
            raise ConfigError("ram_cache_bytes", f"must be >= 0, got {self.ram_cache_bytes}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError("metrics_port", f"must be within [0, 65535], got {self.metrics_port}")
        if self.stream_window < 0:
            raise ConfigError("stream_window", f"must be >= 0, got {self.stream_window}")
        if self.tokenizer_dir is not None and not Path(self.tokenizer_dir).is_dir():
            raise ConfigError("tokenizer_dir", f"{self.tokenizer_dir} is not a directory")
        if self.grace_seconds < 0:
            raise ConfigError("grace_seconds", f"must be >= 0, got {self.grace_seconds}")

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def window(self) -> int:
        return self.stream_window or 2 * self.worker_count
