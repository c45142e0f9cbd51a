"""L2: the packed datasets on the shared filesystem, the canonical copy.

The engine only reads here (LMDB opened read-only without a lock file, fills
opened ``rb``), so a dataset may sit on a read-only mount. This module maps
sample ids to shards and counts what is read from L2: whole shards copied
into L1, and sample values read directly by workers when L1 is off or full.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping
from pathlib import Path

from dataengine.shards import Manifest, ShardEntry
from dataengine.tiers.counters import CacheCounters

__all__ = ["SharedTier"]


class SharedTier:
    """The served datasets (name -> manifest, name -> directory). Thread-safe."""

    def __init__(self, manifests: Mapping[str, Manifest], roots: Mapping[str, Path]) -> None:
        self._manifests = dict(manifests)
        self._roots = {name: Path(root) for name, root in roots.items()}
        self._starts = {
            name: [s.first_sample_id for s in m.shards] for name, m in self._manifests.items()
        }
        self._lock = threading.Lock()
        self._reads = 0
        self._bytes_read = 0

    def shard_of(self, dataset: str, sample_id: int) -> ShardEntry:
        """The shard holding ``sample_id`` (already validated to exist)."""
        shards = self._manifests[dataset].shards
        return shards[bisect.bisect_right(self._starts[dataset], sample_id) - 1]

    def path(self, dataset: str, shard: ShardEntry) -> Path:
        return self._roots[dataset] / shard.file

    def add_read(self, nbytes: int) -> None:
        """One read of ``nbytes`` from L2 (a shard copy or a sample value)."""
        with self._lock:
            self._reads += 1
            self._bytes_read += nbytes

    def counters(self) -> CacheCounters:
        """Every L2 read is a hit; ``bytes_held``/``entries`` are the datasets'
        bytes and shards; L2 has no budget."""
        with self._lock:
            return CacheCounters(
                hits=self._reads,
                bytes_held=sum(m.size_bytes for m in self._manifests.values()),
                entries=sum(len(m.shards) for m in self._manifests.values()),
                bytes_read=self._bytes_read,
            )
