"""Engine configuration: each field is one ``dataengine serve`` flag."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from dataengine.audit import parse_durability
from dataengine.configs import check, check_int, check_range, setting
from dataengine.errors import ConfigError

__all__ = ["ServerConfig"]


def _loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


@dataclass(frozen=True)
class ServerConfig:
    """What one engine serves and with what resources. Each setting's help
    says its meaning and unit; ``dataengine serve`` has one flag per setting
    (``dataengine.configs.add_flags``). Errors name the field as
    ``server.FIELD``."""

    datasets: tuple[Path, ...]  # packed dataset directories (L2, read-only)
    host: str = setting("127.0.0.1", help="address to bind")
    port: int = setting(50051, help="gRPC port (0 picks a free port)")
    workers: int = setting(0, help="decode processes (0 = cores)")
    ram_cache_bytes: int = setting(1 << 30, help="L0 budget, bytes (0: off)", flag="--ram-cache")
    cache_dir: Path | None = setting(
        None, help="L1: node-local disk cache directory (default: no L1)"
    )
    disk_cache_bytes: int | None = setting(
        None,
        help="L1 budget, bytes (default: 90% of the room on --cache-dir's disk, "
        "less the decode cache's budget)",
        flag="--disk-cache",
    )
    decode_cache_bytes: int | None = setting(
        None,
        help="budget of the decode cache (L1d: decoded prefixes in --cache-dir/decoded), bytes "
        "(default with --cache-dir: 25% of the room on its disk; 0: off)",
        flag="--decode-cache",
    )
    fill_threads: int = setting(2, help="concurrent L1 shard fills")
    metrics_port: int | None = setting(
        None,
        help="Prometheus text on this port (default: none); HTTPS with the engine's "
        "certificate when --tls-cert is given",
    )
    metrics_host: str | None = setting(
        None, help="address the metrics port binds (default: --host)"
    )
    stream_window: int = setting(
        0, help="samples of one stream in the decode pool at once (0 = 2 x workers)"
    )
    decode_ahead: int | None = setting(
        None,
        help="samples per stream decoded ahead into L0 (default: the stream window; 0: off)",
    )
    grace_seconds: float = setting(10.0, help="drain timeout on SIGTERM, seconds", flag="--grace")
    shared_memory: bool = setting(
        True,
        help="hand samples to clients on this host through /dev/shm when they ask "
        "(--no-shared-memory: TCP only)",
    )
    data_channel: bool = setting(
        True,
        help="offer clients a plain TCP data channel for sample bytes, cheaper than "
        "gRPC messages (--no-data-channel: samples inside gRPC messages only)",
    )
    data_port: int = setting(0, help="the data channel's port (0 picks a free port)")
    tokenizer_dir: Path | None = setting(
        None,
        help="tokenizers requests may name, by file name: vocabulary files and Hugging Face "
        "tokenizer.json files (a model's directory, with its tokenizer_config.json) "
        "(default: only the byte tokenizer)",
    )
    tls_cert: Path | None = setting(
        None,
        help="PEM certificate chain the engine presents: gRPC, the data channel and the "
        "metrics port use TLS (with --tls-key; both re-read on SIGHUP)",
    )
    tls_key: Path | None = setting(None, help="PEM private key of --tls-cert")
    tls_client_ca: Path | None = setting(
        None,
        help="PEM CA bundle: clients must present a certificate it signed (mutual TLS; "
        "needs --tls-cert)",
    )
    auth_file: Path | None = setting(
        None,
        help="JSON of principals: name, token_sha256 (never the token) or cert_subject, "
        "datasets, roles; every call but health and reflection needs one (re-read on SIGHUP)",
    )
    insecure: bool = setting(
        False,
        help="allow binding beyond loopback without TLS and --auth-file (logged, shown in "
        "GetStats; never for patient data)",
    )
    audit_log: Path | None = setting(
        None,
        help="append one hash-chained JSON line per data operation (streams, describe, stats, "
        "refused calls) to this file (default: no audit log)",
    )
    audit_durability: str = setting(
        "fsync",
        help="when audit lines reach the disk: 'fsync' (each line), an interval such as "
        "'200ms' (a crash loses at most that window), or 'none'",
    )
    max_ids_per_request: int = setting(4096, help="sample ids one StreamSamples call may list")
    capacity_window_s: float = setting(
        30.0,
        help="seconds the capacity gauges look back (worker busy fraction, queue wait, "
        "capacity, client demand)",
        flag="--capacity-window",
    )
    test_task_delay_s: float = setting(
        0.0,
        help="TEST ONLY: each sample task sleeps this long first, seconds (throttles the "
        "workers without using CPU; benchmarks/bench_capacity.py)",
        flag="--test-task-delay",
    )
    max_streams: int = setting(
        0,
        help="long-lived calls (streams, shared-memory and data-channel leases) open at once "
        "(0 = max(64, 8 x workers))",
    )
    max_streams_per_principal: int = setting(
        0, help="long-lived calls one principal may hold open with --auth-file (0 = 3/4 of max)"
    )

    def __post_init__(self) -> None:
        check(bool(self.datasets), "server.datasets", "at least one dataset directory is required")
        check_int(self.port, "server.port", 0, 65535)
        check_int(self.data_port, "server.data_port", 0, 65535)
        check_int(self.workers, "server.workers", 0, note="0 = core count")
        check_int(self.ram_cache_bytes, "server.ram_cache_bytes", 0)
        self._check_cache_dir()
        check_int(self.fill_threads, "server.fill_threads", 1)
        if self.metrics_port is not None:
            check_int(self.metrics_port, "server.metrics_port", 0, 65535)
        check_int(self.stream_window, "server.stream_window", 0)
        if self.decode_ahead is not None:
            check_int(self.decode_ahead, "server.decode_ahead", 0)
        check(
            self.tokenizer_dir is None or Path(self.tokenizer_dir).is_dir(),
            "server.tokenizer_dir",
            f"{self.tokenizer_dir} is not a directory",
        )
        check_range(self.grace_seconds, "server.grace_seconds", 0, unit="seconds")
        self._check_tls()
        self._check_exposure()
        check_int(self.max_ids_per_request, "server.max_ids_per_request", 1)
        check_range(
            self.capacity_window_s, "server.capacity_window_s", 1, finite=True, unit="seconds"
        )
        check_range(
            self.test_task_delay_s, "server.test_task_delay_s", 0, finite=True, unit="seconds"
        )
        parse_durability(self.audit_durability, "server.audit_durability")
        check_int(self.max_streams, "server.max_streams", 0, note="0 = derived")
        check_int(self.max_streams_per_principal, "server.max_streams_per_principal", 0)

    def _check_tls(self) -> None:
        check(
            (self.tls_cert is None) == (self.tls_key is None),
            "server.tls_cert" if self.tls_cert is None else "server.tls_key",
            "--tls-cert and --tls-key go together",
        )
        check(
            self.tls_client_ca is None or self.tls_cert is not None,
            "server.tls_client_ca",
            "mutual TLS needs the engine's own certificate (--tls-cert, --tls-key)",
        )
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            path = getattr(self, name)
            check(path is None or Path(path).is_file(), f"server.{name}", f"{path} is not a file")
        # The metrics port is HTTPS with TLS on; in plaintext it stays on
        # loopback like the gRPC port, unless --insecure.
        check(
            self.tls or self.insecure or self.metrics_host is None or _loopback(self.metrics_host),
            "server.metrics_host",
            f"{self.metrics_host!r} is reachable beyond this machine and the metrics port has no "
            "TLS: give --tls-cert and --tls-key, bind 127.0.0.1, or pass --insecure",
        )

    def _check_exposure(self) -> None:
        """Secure by default: beyond loopback, TLS and auth or --insecure."""
        if self.auth_file is not None:
            check(
                Path(self.auth_file).is_file(),
                "server.auth_file",
                f"{self.auth_file} is not a file",
            )
        if self.insecure or _loopback(self.host) or (self.tls and self.auth_file is not None):
            return
        missing = " and ".join(
            m
            for m, off in (
                ("TLS (--tls-cert, --tls-key)", not self.tls),
                ("--auth-file", self.auth_file is None),
            )
            if off
        )
        raise ConfigError(
            "server.host",
            f"{self.host!r} is reachable beyond this machine and the engine has no {missing}: "
            "give them, bind 127.0.0.1, or pass --insecure (never for patient data)",
        )

    @property
    def stream_limit(self) -> int:
        """Long-lived calls open at once (``max_streams``, derived when 0)."""
        return self.max_streams or max(64, 8 * self.worker_count)

    @property
    def principal_stream_limit(self) -> int:
        """Long-lived calls one principal may hold open."""
        return self.max_streams_per_principal or max(1, 3 * self.stream_limit // 4)

    @property
    def tls(self) -> bool:
        """Whether the engine serves TLS (every port it opens)."""
        return self.tls_cert is not None

    def _check_cache_dir(self) -> None:
        if self.disk_cache_bytes is not None:
            check(
                self.cache_dir is not None,
                "server.disk_cache_bytes",
                "needs a cache_dir (--cache-dir)",
            )
            check_int(self.disk_cache_bytes, "server.disk_cache_bytes", 0)
        if self.decode_cache_bytes is not None:
            check_int(self.decode_cache_bytes, "server.decode_cache_bytes", 0)
            check(
                self.decode_cache_bytes == 0 or self.cache_dir is not None,
                "server.decode_cache_bytes",
                "needs a cache_dir (--cache-dir)",
            )
        if self.cache_dir is None:
            return
        cache = Path(self.cache_dir).resolve()
        check(
            not cache.exists() or cache.is_dir(),
            "server.cache_dir",
            f"{self.cache_dir} exists and is not a directory",
        )
        for dataset in self.datasets:
            root = Path(dataset).resolve()
            if cache == root or root in cache.parents or cache in root.parents:
                raise ConfigError(
                    "server.cache_dir",
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
