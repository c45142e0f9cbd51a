"""Prepared views as a source of prefixes: which view serves a request, and
whether its shard may be read.

``dataengine prepare`` writes, beside a dataset's source shards, a view per
prefix key (``dataengine/prepared/``). The engine finds the servable ones at
start (``find_views`` logs and skips stale ones). A request whose
``spec.prefix_key()`` equals a view's key reads its samples' prefix values
from the view's shard, which is leased through L1 exactly like a source
shard (same ``DiskCache``, keyed by the shard's SHA-256).

A prepared shard's SHA-256 is verified before any of its values is served:
an L1 fill verifies as it copies; a shard read straight from L2 (no L1, or no
room in it) is hashed once per engine process by a background job, and its
samples wait for that job as they would wait for an L1 fill. A shard that
fails is logged once and never served: its samples are decoded from the
source instead (the lease's gate resolves to None).
"""

from __future__ import annotations

import bisect
import concurrent.futures as cf
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dataengine.prepared import PreparedManifest, view_dir
from dataengine.shards import ShardEntry, file_sha256
from dataengine.tiers.disk import ShardLocation

__all__ = ["PreparedTier", "View"]

_LOG = logging.getLogger(__name__)
_CHUNK = 4 << 20

Gate = cf.Future[ShardLocation | None]


@dataclass(frozen=True)
class View:
    """One servable view: its directory and manifest."""

    directory: Path
    manifest: PreparedManifest

    @classmethod
    def of(cls, dataset_dir: Path, manifest: PreparedManifest) -> View:
        return cls(view_dir(dataset_dir, manifest.prefix_key), manifest)


class PreparedTier:
    """The servable views by dataset name and prefix key. ``on_source_read``
    is told of the bytes a verification reads from L2. Lifecycle: ``start()``,
    ``stop()`` (verifications not started resolve as "not servable")."""

    def __init__(
        self,
        views: Mapping[str, Mapping[str, View]],
        *,
        on_source_read: Callable[[int], None] | None = None,
    ) -> None:
        self._views = {name: dict(by_key) for name, by_key in views.items()}
        self._starts = {
            (name, key): [s.first_sample_id for s in v.manifest.shards]
            for name, by_key in self._views.items()
            for key, v in by_key.items()
        }
        self._on_source_read = on_source_read or (lambda _n: None)
        self._checks: dict[str, cf.Future[bool]] = {}  # sha256 -> verified on L2
        self._bad: set[str] = set()
        self._lock = threading.Lock()
        self._executor: cf.ThreadPoolExecutor | None = None

    def start(self) -> PreparedTier:
        self._executor = cf.ThreadPoolExecutor(1, thread_name_prefix="view-check")
        return self

    def stop(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            pending = [f for f in self._checks.values() if not f.done()]
        for future in pending:  # cancelled jobs: their samples decode instead
            if future.set_running_or_notify_cancel():
                future.set_result(False)

    def __enter__(self) -> PreparedTier:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def keys(self, dataset: str) -> list[str]:
        """The prefix keys with a servable view of ``dataset``."""
        return sorted(self._views.get(dataset, {}))

    def shard(
        self, dataset: str, prefix_key: str, sample_id: int
    ) -> tuple[ShardEntry, Path] | None:
        """The view shard holding ``sample_id`` and its path on L2, or None
        when no view matches or that shard is known bad."""
        view = self._views.get(dataset, {}).get(prefix_key)
        if view is None:
            return None
        starts = self._starts[(dataset, prefix_key)]
        shard = view.manifest.shards[bisect.bisect_right(starts, sample_id) - 1]
        if shard.sha256 in self._bad:
            return None
        return shard, view.directory / shard.file

    def gate(
        self,
        shard: ShardEntry,
        path: Path,
        located: cf.Future[ShardLocation],
        known_bad: Callable[[str], bool],
    ) -> Gate:
        """What a worker may read once ``located`` (the shard's L1 lease)
        resolves: an L1 copy as is (its fill verified it); an L2 path once
        verified here; None when the shard failed (``known_bad`` says the L1
        fill found it corrupt)."""
        gate: Gate = cf.Future()

        def on_located(done: cf.Future[ShardLocation]) -> None:
            where = done.result()
            if where.tier == "L1":
                # No fallback to the unverified L2 file: if the copy vanishes,
                # the worker decodes from the source.
                gate.set_result(ShardLocation(where.path, "L1"))
            elif known_bad(shard.sha256):
                self._reject(shard, path, "its SHA-256 differs from the view's manifest")
                gate.set_result(None)
            else:
                check = self._check(shard, path)
                check.add_done_callback(
                    lambda c: gate.set_result(ShardLocation(path, "L2") if c.result() else None)
                )

        located.add_done_callback(on_located)
        return gate

    def _check(self, shard: ShardEntry, path: Path) -> cf.Future[bool]:
        """One verification of ``shard`` on L2 per process, shared."""
        with self._lock:
            future = self._checks.get(shard.sha256)
            if future is not None:
                return future
            future = cf.Future()
            if self._executor is None:
                future.set_result(False)  # stopping: decode instead
                return future
            self._checks[shard.sha256] = future
            self._executor.submit(self._verify, shard, path, future)
            return future

    def _verify(self, shard: ShardEntry, path: Path, future: cf.Future[bool]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        problem = None
        try:
            size = path.stat().st_size
            if size != shard.size_bytes:
                problem = f"it has {size} bytes, the view's manifest says {shard.size_bytes}"
            else:
                digest = file_sha256(path, _CHUNK)
                self._on_source_read(size)
                if digest != shard.sha256:
                    problem = "its SHA-256 differs from the view's manifest"
        except OSError as exc:
            problem = f"it cannot be read ({exc})"
        if problem is not None:
            self._reject(shard, path, problem)
        future.set_result(problem is None)

    def _reject(self, shard: ShardEntry, path: Path, problem: str) -> None:
        with self._lock:
            if shard.sha256 in self._bad:
                return
            self._bad.add(shard.sha256)
        _LOG.error(
            "not serving prepared shard %s: %s; its samples are decoded from the source",
            path,
            problem,
        )
