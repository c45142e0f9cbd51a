"""Plumbing shared by the fleet benchmarks (``bench_tiers``,
``bench_fleet_cache``, ``bench_recovery``).

- ``packed_corpus``: a synthetic corpus, packed once per set of parameters
  and reused by later runs (generation and packing are deterministic, and
  they take longer than the quick benchmarks themselves).
- ``Engine`` / ``start_fleet``: real ``dataengine serve`` processes, their
  merged output drained in the background (kept for error messages), and
  every process of their tree ended on ``stop``, decode workers included:
  a SIGKILLed engine leaves its spawned workers behind otherwise.
- ``engine_stats`` / ``tier_deltas``: GetStats per tier, as the difference
  between two snapshots (one epoch's figures).
- ``add_corpus_args`` / ``corpus_from_args`` (the ``--quick`` and default
  corpus sizes), ``percentile``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import psutil

from dataengine.deid.keys import load_key
from dataengine.pack import PackConfig, pack_dataset
from dataengine.server.launch import EngineExitedError, start_engine_process
from dataengine.synth import generate_corpus
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

__all__ = [
    "Corpus",
    "Engine",
    "TierDelta",
    "add_corpus_args",
    "corpus_from_args",
    "engine_stats",
    "format_tier_table",
    "packed_corpus",
    "percentile",
    "start_fleet",
    "stop_all",
    "tier_deltas",
]

_LOG = logging.getLogger(__name__)
TIERS = ("L0", "L1", "L2")


# -- corpus ------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """A synthetic corpus: ``studies`` studies of ``slices`` x ``size`` x
    ``size`` CT + 12-lead ECG + report, packed ``shard_samples`` per shard."""

    studies: int
    slices: int
    size: int
    shard_samples: int

    def describe(self) -> str:
        return (
            f"{self.studies} studies of {self.slices}x{self.size}x{self.size} CT + "
            f"12-lead ECG + report, {self.shard_samples} per shard"
        )


def add_corpus_args(parser: argparse.ArgumentParser) -> None:
    """``--quick``, ``--out`` and the corpus options (None: the quick or the
    default value, see ``corpus_from_args``)."""
    parser.add_argument(
        "--quick", action="store_true", help="small corpus and few repeats (about a minute)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-output"), help="work directory")
    parser.add_argument("--studies", type=int, default=None, help="quick 48, default 96")
    parser.add_argument("--slices", type=int, default=16, help="CT slices per study")
    parser.add_argument("--size", type=int, default=128, help="CT rows = columns")
    parser.add_argument("--shard-samples", type=int, default=2, help="studies per shard")


def corpus_from_args(args: argparse.Namespace) -> Corpus:
    studies = args.studies or (48 if args.quick else 96)
    return Corpus(studies, args.slices, args.size, args.shard_samples)


def packed_corpus(out: Path, corpus: Corpus) -> Path:
    """The packed dataset of ``corpus`` under ``out``, made on first use and
    reused afterwards (a dataset is complete once its manifest exists)."""
    c = corpus
    home = out / f"corpus-{c.studies}x{c.slices}x{c.size}-s{c.shard_samples}"
    dataset = home / "dataset"
    if (dataset / "manifest.json").is_file():
        return dataset
    shutil.rmtree(home, ignore_errors=True)
    raw = home / "raw"
    generate_corpus(raw, c.studies, seed=0, slices=c.slices, rows=c.size, cols=c.size)
    config = PackConfig(
        key=load_key(insecure_demo=True), shard_samples=c.shard_samples, workers=os.cpu_count() or 1
    )
    pack_dataset(raw, dataset, config)
    shutil.rmtree(raw)  # engines read only the dataset
    return dataset


# -- engines -----------------------------------------------------------------


class Engine:
    """One ``dataengine serve`` process serving ``dataset`` on a free
    loopback port with ``workers`` decode processes and ``flags``."""

    def __init__(self, dataset: Path, *flags: str, workers: int = 1) -> None:
        self.output: collections.deque[str] = collections.deque(maxlen=400)
        try:
            self.proc, self.address = start_engine_process(
                [str(dataset), "--port", "0", "--workers", str(workers), *flags],
                on_line=self.output.append,
                merge_stderr=True,
            )
        except EngineExitedError as exc:
            raise RuntimeError(f"{exc}:\n{''.join(self.output)}") from None
        # Its decode workers and resource tracker, known now: once the engine
        # is killed they are orphans that nothing else would end.
        try:
            self._tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            self._tree = []
        self._drain = threading.Thread(target=self._pump, name="engine-output", daemon=True)
        self._drain.start()

    def _pump(self) -> None:
        if self.proc.stdout is not None:
            for line in self.proc.stdout:
                self.output.append(line)

    def kill(self) -> float:
        """SIGKILL the engine and then its decode workers, as the loss of its
        node would; returns the ``time.monotonic()`` just before the first
        signal. ``stop`` reaps them."""
        t = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        for child in self._tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        return t

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (drain) and wait; SIGKILL after ``timeout`` seconds; then
        end whatever is left of its process tree."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _LOG.warning("engine %s ignored SIGTERM for %.0fs", self.address, timeout)
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc.wait(timeout)
        # A drained engine joins its workers itself; these wait briefly for that.
        _, alive = psutil.wait_procs(self._tree, timeout=2.0)
        for child in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(alive, timeout=5.0)
        if self.proc.stdout is not None:
            self._drain.join(5.0)
            self.proc.stdout.close()


def start_fleet(dataset: Path, n: int, *flags: str) -> list[Engine]:
    """``n`` engines with one decode worker each, started side by side; if
    one fails to start, the others are stopped."""
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(Engine, dataset, *flags) for _ in range(n)]
    engines, errors = [], []
    for f in futures:
        try:
            engines.append(f.result())
        except Exception as exc:
            errors.append(exc)
    if errors:
        stop_all(engines)
        raise errors[0]
    return engines


def stop_all(engines: Sequence[Engine]) -> None:
    """Stop every engine (side by side: each may take its drain time)."""
    with ThreadPoolExecutor(max(1, len(engines))) as pool:
        list(pool.map(lambda e: e.stop(), engines))


# -- stats -------------------------------------------------------------------


def engine_stats(address: str) -> pb.EngineStats:
    with grpc.insecure_channel(address) as channel:
        return pb_grpc.DataEngineStub(channel).GetStats(pb.GetStatsRequest(), timeout=30)


@dataclass(frozen=True)
class TierDelta:
    """One tier's figures between two GetStats snapshots. ``bytes_held`` is
    the later snapshot's; times are milliseconds (means over the interval's
    fills and prefetch fills; 0 when there were none)."""

    hits: int
    misses: int
    bytes_read: int
    fills: int
    fill_mean_ms: float
    prefetch_fills: int
    prefetch_lead_mean_ms: float
    waits: int
    evictions: int
    bytes_held: int

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


def _by_tier(stats: pb.EngineStats) -> dict[str, pb.CacheStats]:
    return {c.tier: c for c in stats.caches}


def tier_deltas(before: pb.EngineStats, after: pb.EngineStats) -> dict[str, TierDelta]:
    """Per tier ("L0", "L1", "L2"): ``after`` minus ``before``."""
    old, new = _by_tier(before), _by_tier(after)
    out = {}
    for tier in TIERS:
        a, b = old.get(tier, pb.CacheStats()), new.get(tier, pb.CacheStats())
        fills = b.fills - a.fills
        prefetch = b.prefetch_fills - a.prefetch_fills
        lead_ms = (
            b.prefetch_lead_mean_ms * b.prefetch_fills - a.prefetch_lead_mean_ms * a.prefetch_fills
        )
        out[tier] = TierDelta(
            hits=b.hits - a.hits,
            misses=b.misses - a.misses,
            bytes_read=b.bytes_read - a.bytes_read,
            fills=fills,
            fill_mean_ms=1e3 * (b.fill_seconds_total - a.fill_seconds_total) / fills
            if fills
            else 0.0,
            prefetch_fills=prefetch,
            prefetch_lead_mean_ms=lead_ms / prefetch if prefetch else 0.0,
            waits=b.waits - a.waits,
            evictions=b.evictions - a.evictions,
            bytes_held=b.bytes_held,
        )
    return out


def format_tier_table(rows: dict[str, dict[str, TierDelta]]) -> list[str]:
    """A table of per-tier deltas (MB are 10^6 bytes): ``rows`` maps a
    label to its tiers."""
    head = (
        f"{'':<16}{'tier':<5}{'hits':>7}{'misses':>8}{'hit%':>7}{'read MB':>9}{'fills':>7}"
        f"{'fill ms':>9}{'prefetch':>9}{'lead ms':>9}{'waits':>7}{'evict':>7}{'held MB':>9}"
    )
    lines = [head]
    for label, tiers in rows.items():
        for tier, d in tiers.items():
            rate = d.hit_rate
            lines.append(
                f"{label:<16}{tier:<5}{d.hits:>7}{d.misses:>8}"
                f"{'n/a' if rate is None else f'{100 * rate:.1f}':>7}"
                f"{d.bytes_read / 1e6:>9.2f}{d.fills:>7}{d.fill_mean_ms:>9.1f}"
                f"{d.prefetch_fills:>9}{d.prefetch_lead_mean_ms:>9.1f}{d.waits:>7}"
                f"{d.evictions:>7}{d.bytes_held / 1e6:>9.2f}"
            )
            label = ""
    return lines


# -- numbers -----------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear interpolation between the
    closest ranks (with few values, p99 is close to the maximum)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))
