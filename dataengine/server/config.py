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
    (0 disables it); ``cache_dir`` is the L1 directory (node-local disk; None:
    no L1) and ``disk_cache_bytes`` its budget in bytes (None: 90% of what
    the disk could hold less the decode cache's budget, derived at start);
    ``decode_cache_bytes`` is the budget of the decode cache (L1d, in
    ``cache_dir/decoded``) in bytes (None: a quarter of what the disk could
    hold, derived at start, when there is a ``cache_dir``; 0: off);
    ``fill_threads`` bound concurrent
    L1 fills; ``metrics_port`` serves Prometheus text when set;
    ``stream_window`` is how many samples one stream keeps in the worker pool
    at once (default: 2 x workers) and ``decode_ahead`` how many more of its
    requested samples may be decoded ahead into L0 (None: the stream window;
    0: off); ``grace_seconds`` bounds draining on stop; ``tokenizer_dir``
    holds the vocabulary files requests may name (by bare file name); without
    it only the byte tokenizer is offered."""

    datasets: tuple[Path, ...]
    host: str = "127.0.0.1"
    port: int = 50051
    workers: int = 0
    ram_cache_bytes: int = DEFAULT_RAM_CACHE_BYTES
    cache_dir: Path | None = None
    disk_cache_bytes: int | None = None
    decode_cache_bytes: int | None = None
    fill_threads: int = 2
    metrics_port: int | None = None
    stream_window: int = 0
    decode_ahead: int | None = None
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
        self._check_cache_dir()
        if self.fill_threads < 1:
            raise ConfigError("fill_threads", f"must be >= 1, got {self.fill_threads}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError("metrics_port", f"must be within [0, 65535], got {self.metrics_port}")
        if self.stream_window < 0:
            raise ConfigError("stream_window", f"must be >= 0, got {self.stream_window}")
        if self.decode_ahead is not None and self.decode_ahead < 0:
            raise ConfigError("decode_ahead", f"must be >= 0, got {self.decode_ahead}")
        if self.tokenizer_dir is not None and not Path(self.tokenizer_dir).is_dir():
            raise ConfigError("tokenizer_dir", f"{self.tokenizer_dir} is not a directory")
        if self.grace_seconds < 0:
            raise ConfigError("grace_seconds", f"must be >= 0, got {self.grace_seconds}")

    def _check_cache_dir(self) -> None:
        if self.disk_cache_bytes is not None:
            if self.cache_dir is None:
                raise ConfigError("disk_cache_bytes", "needs a cache_dir (--cache-dir)")
            if self.disk_cache_bytes < 0:
                raise ConfigError("disk_cache_bytes", f"must be >= 0, got {self.disk_cache_bytes}")
        if self.decode_cache_bytes is not None:
            if self.decode_cache_bytes < 0:
                raise ConfigError(
                    "decode_cache_bytes", f"must be >= 0, got {self.decode_cache_bytes}"
                )
            if self.decode_cache_bytes > 0 and self.cache_dir is None:
                raise ConfigError("decode_cache_bytes", "needs a cache_dir (--cache-dir)")
        if self.cache_dir is None:
            return
        cache = Path(self.cache_dir).resolve()
        if cache.exists() and not cache.is_dir():
            raise ConfigError("cache_dir", f"{self.cache_dir} exists and is not a directory")
        for dataset in self.datasets:
            root = Path(dataset).resolve()
            if cache == root or root in cache.parents or cache in root.parents:
                raise ConfigError(
                    "cache_dir",
                    f"{self.cache_dir} overlaps dataset {dataset}: L2 is read-only, "
                    "the cache needs a directory of its own",
                )

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def window(self) -> int:
        return self.stream_window or 2 * self.worker_count

    @property
    def ahead(self) -> int:
        return self.window if self.decode_ahead is None else self.decode_ahead
