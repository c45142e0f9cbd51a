"""L1d: the persistent decode cache, prefix values on node-local disk.

When no prepared view matches a request's prefix key, the engine decodes the
study and the worker that decoded it writes its prefix value
(``compress_blob(encode_prefix(...))``, a checksummed zstd frame) here, so no
engine on the node decodes it again for that prefix key: not after a
restart, not for a second job or engine on the same ``--cache-dir``.

Layout, under ``<cache dir>/decoded/``::

    <prefix key>/<source fingerprint>/<sample id // 1024>/<sample id>.zst
    .../<sample id>.zst.<pid>-<hex>.tmp       a write in progress (never read)

The prefix key names the job shape and the source fingerprint
(``dataengine.prepared.source_fingerprint``) the dataset's exact shards, so
another dataset, other shards or another job shape never match an entry.

Guarantees:

- A write is atomic: the worker writes a temporary name, fsyncs it and
  renames it; a final name is never on a partial file. The directory is not
  fsynced: a rename lost in a power cut costs one decode again.
- An entry is checked on every read: its zstd checksum and content size,
  then the sample id inside. A partial or corrupt entry is deleted and the
  study decoded again (and written again), never served.
- The front owns the index (LRU by use, within ``budget_bytes``): it scans
  the directory at start (deleting ``*.tmp`` leftovers of crashed writes,
  oldest file first in LRU order), admits each file a worker wrote, and evicts least recently
  used files that no queued sample holds. Files another engine wrote after
  this one started are adopted when first asked for. Admission follows the
  write, so the directory can exceed the budget by the writes in flight
  (at most one prefix value per busy worker).
- A failed write (disk full, a read-only directory) is a skipped entry and a
  rate-limited warning, never a failed sample.

Functions for the worker side (``write_entry``, ``read_entry``) sit beside
the front's ``DecodeCache``: both halves of the one format live here.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dataengine.pipeline.stored import decompress_blob
from dataengine.tiers.counters import CacheCounters, TierTally

__all__ = [
    "DECODED_DIR",
    "DEFAULT_DECODE_SHARE",
    "DecodeCache",
    "default_decode_budget",
    "entry_path",
    "present_bytes",
    "read_entry",
    "write_entry",
]

_LOG = logging.getLogger(__name__)
DECODED_DIR = "decoded"
# Share of the room on the cache directory's disk the decode cache takes
# when --decode-cache is not given (L1 shards get 90% minus this).
DEFAULT_DECODE_SHARE = 0.25
_FINAL = re.compile(r"^\d+\.zst$")
_FAN_OUT = 1024  # entries per leaf directory, at most
_WARN_EVERY_S = 60.0
# A temporary file younger than this may be a peer engine's write in
# progress (a write takes milliseconds); an older one is a crash's leftover.
_TMP_GRACE_S = 60.0


def entry_path(root: Path, prefix_key: str, fingerprint: str, sample_id: int) -> Path:
    """Where the entry of ``sample_id`` lives under ``root`` (the ``decoded`` dir)."""
    return root / prefix_key / fingerprint / str(sample_id // _FAN_OUT) / f"{sample_id}.zst"


def write_entry(path: Path, value: bytes) -> None:
    """Write a prefix value atomically (temporary name, fsync, rename).
    Raises ``OSError`` (disk full, permissions); leaves no temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(value)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_entry(path: Path, sample_id: int) -> tuple[bytes, int]:
    """The prefix blob stored at ``path`` and the file's size in bytes.
    ``FileNotFoundError`` when it is gone; ``DataLossError`` when it fails
    its checksum (the caller deletes it; ``decode_prefix`` checks the id)."""
    with open(path, "rb") as f:
        value = f.read()
    return decompress_blob(value, sample_id), len(value)


def present_bytes(cache_dir: Path) -> int:
    """Bytes the decode cache's files take under ``cache_dir`` now."""
    root = Path(cache_dir) / DECODED_DIR
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                continue
    return total


def default_decode_budget(cache_dir: Path) -> int:
    """``DEFAULT_DECODE_SHARE`` of what the disk could hold for the decode
    cache: its free space plus the entries already there (bytes)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    room = shutil.disk_usage(cache_dir).free + present_bytes(cache_dir)
    return int(DEFAULT_DECODE_SHARE * room)


@dataclass(eq=False)
class _Entry:
    size: int
    pins: int = 0


class DecodeCache:
    """The front's index of the decode cache in ``cache_dir/decoded`` within
    ``budget_bytes``. ``fingerprints`` maps each served dataset to its
    source fingerprint. Thread-safe. Lifecycle: ``start()`` (scan), then
    ``pin`` what a request will read, ``admit`` what workers wrote."""

    def __init__(self, cache_dir: Path, budget_bytes: int, fingerprints: Mapping[str, str]) -> None:
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        self.root = Path(cache_dir) / DECODED_DIR
        self.budget_bytes = budget_bytes
        self._fingerprints = dict(fingerprints)
        self._index: OrderedDict[Path, _Entry] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self._held = 0
        self._tally = TierTally()
        self._write_failures = 0
        self._warned_at: float | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> DecodeCache:
        """Create the directory, delete leftovers of interrupted writes (older
        than a minute: a younger one may be a peer's write in progress), index
        the entries present (oldest first) and trim to the budget."""
        self.root.mkdir(parents=True, exist_ok=True)
        found: list[tuple[float, Path, int]] = []
        removed = 0
        now = time.time()
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                path = Path(folder) / name
                try:
                    if name.endswith(".tmp"):
                        if now - path.stat().st_mtime > _TMP_GRACE_S:
                            path.unlink()
                            removed += 1
                    elif _FINAL.match(name):
                        st = path.stat()
                        found.append((st.st_mtime, path, st.st_size))
                except FileNotFoundError:
                    continue
        with self._lock:
            for _mtime, path, size in sorted(found):
                self._index[path] = _Entry(size)
                self._held += size
            self._make_room(0)
        _LOG.info(
            "decode cache %s: budget %d bytes; found %d entries (%d bytes); "
            "removed %d temporary files",
            self.root,
            self.budget_bytes,
            len(found),
            sum(size for *_, size in found),
            removed,
        )
        return self

    def stop(self) -> None:
        """Nothing runs in the background; here for the common lifecycle."""

    def __enter__(self) -> DecodeCache:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- lookups ---------------------------------------------------------------

    def path(self, dataset: str, prefix_key: str, sample_id: int) -> Path:
        """The entry's path (whether or not it exists)."""
        return entry_path(self.root, prefix_key, self._fingerprints[dataset], sample_id)

    def pin(self, dataset: str, prefix_key: str, sample_id: int) -> Path | None:
        """The entry of ``sample_id`` if the cache holds it, pinned (never
        evicted) until ``unpin``; None when it has to be decoded. A file that
        another engine wrote is adopted here (one ``stat``)."""
        path = self.path(dataset, prefix_key, sample_id)
        with self._lock:
            e = self._index.get(path)
            if e is None:
                try:
                    size = path.stat().st_size
                except (FileNotFoundError, NotADirectoryError):
                    return None
                if not self._make_room(size):
                    return None
                e = self._index[path] = _Entry(size)
                self._held += size
            e.pins += 1
            self._index.move_to_end(path)
            return path

    def unpin(self, path: Path) -> None:
        with self._lock:
            e = self._index.get(path)
            if e is not None and e.pins > 0:
                e.pins -= 1

    # -- what workers did ------------------------------------------------------

    def hit(self, nbytes: int) -> None:
        """A worker served a sample from an entry of ``nbytes``."""
        with self._lock:
            self._tally.hits += 1
            self._tally.bytes_read += nbytes

    def miss(self) -> None:
        """A sample was decoded: no entry, or a bad one."""
        with self._lock:
            self._tally.misses += 1

    def admit(self, path: Path, size: int, seconds: float) -> None:
        """A worker wrote ``path`` (``size`` bytes, in ``seconds``): index it,
        evicting least recently used entries; when it cannot fit beside the
        pinned ones it is deleted."""
        with self._lock:
            e = self._index.get(path)
            if e is not None:  # two streams decoded it at once: same bytes
                self._held += size - e.size
                e.size = size
                self._index.move_to_end(path)
                return
            if size > self.budget_bytes or not self._make_room(size):
                path.unlink(missing_ok=True)
                return
            self._index[path] = _Entry(size)
            self._held += size
            self._tally.filled(seconds)

    def drop(self, path: Path) -> None:
        """A worker found ``path`` gone or corrupt (and deleted it)."""
        with self._lock:
            e = self._index.pop(path, None)
            if e is not None:
                self._held -= e.size

    def write_failed(self, reason: str) -> None:
        """A worker could not write an entry (disk full...): warn at most
        once a minute, with the count of skipped writes."""
        now = time.monotonic()
        with self._lock:
            self._write_failures += 1
            if self._warned_at is not None and now - self._warned_at < _WARN_EVERY_S:
                return
            self._warned_at = now
            count, self._write_failures = self._write_failures, 0
        _LOG.warning(
            "decode cache: %d entr%s not written (%s); serving goes on, decoding these again",
            count,
            "y" if count == 1 else "ies",
            reason,
        )

    def counters(self) -> CacheCounters:
        with self._lock:
            return self._tally.counters(
                bytes_held=self._held,
                budget_bytes=self.budget_bytes,
                entries=len(self._index),
            )

    # -- budget (callers hold self._lock) ----------------------------------------

    def _make_room(self, size: int) -> bool:
        """Evict unpinned entries, least recently used first, until ``size``
        more bytes fit; False (nothing evicted) when they cannot."""
        if self._held + size <= self.budget_bytes:
            return True
        victims: list[Path] = []
        freed = 0
        for path, e in self._index.items():
            if e.pins == 0:
                victims.append(path)
                freed += e.size
                if self._held - freed + size <= self.budget_bytes:
                    break
        if self._held - freed + size > self.budget_bytes:
            return False
        for path in victims:
            self._held -= self._index.pop(path).size
            path.unlink(missing_ok=True)
            self._tally.evictions += 1
        return True
