"""L1: whole shard files copied from the shared filesystem (L2) into a
node-local directory (``--cache-dir``), within a byte budget.

Layout of the directory (one flat namespace, safe to share between datasets
and between engines on one node)::

    <sha256>.lmdb                     a complete shard, named by its content
    <sha256>.lmdb.<pid>-<hex>.tmp     a fill in progress (never read)
    locks/<xx>.lock                   256 flock stripes, by the sha's first byte

Guarantees:

- A fill is atomic: copy to a temporary name while hashing, compare size and
  SHA-256 with the manifest, fsync, rename, fsync the directory. A file with
  a final name is complete; a crash leaves only ``*.tmp`` files, which the
  next start deletes.
- Concurrent requests for one shard share one fill (an in-process future per
  entry); engines sharing the directory serialize fills of a shard with an
  ``flock`` stripe and adopt, after a checksum, what a peer has written.
- Eviction is whole files, least recently leased first, and never touches a
  shard that a queued or in-flight sample has leased (pin counts). When the
  budget is full of pinned shards, or a shard is larger than the budget, the
  sample is read from L2 directly.
- A restart reuses the files it finds. They are not trusted: each one's
  SHA-256 is checked once, in the background, when it is first leased (a
  flipped byte or a truncated file is discarded and the shard refilled, never
  served). Start-up stays O(files) instead of rehashing the whole cache; a
  sidecar with the size and hash written at fill time would not catch damage
  to the file itself. After a file is filled or verified the engine trusts it
  and never hashes on the read path.
- Budgets are per engine: engines sharing a directory each count what they
  know; give each its own directory, or budgets that together fit the disk.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import enum
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dataengine.errors import DataLossError
from dataengine.shards import ShardEntry, file_sha256, fsync_dir
from dataengine.tiers.counters import CacheCounters, TierTally

__all__ = ["DiskCache", "ShardLease", "ShardLocation", "default_disk_budget"]

_LOG = logging.getLogger(__name__)
_CHUNK = 4 << 20
_FINAL = re.compile(r"^([0-9a-f]{64})\.lmdb$")
_TMP = re.compile(r"^([0-9a-f]{64})\.lmdb\..*\.tmp$")
LOCKS_DIR = "locks"


@dataclass(frozen=True)
class ShardLocation:
    """Where a worker reads a shard: ``tier`` "L1" (``fallback`` is the L2 path
    to use if the L1 file has vanished) or "L2"."""

    path: Path
    tier: str
    fallback: Path | None = None


class _State(enum.Enum):
    UNVERIFIED = "unverified"  # found at start, not hashed yet
    FILLING = "filling"  # a job is verifying or copying it
    READY = "ready"


@dataclass(eq=False)
class _Entry:
    key: str
    size: int
    state: _State
    future: cf.Future[ShardLocation] | None = None
    source: Path | None = None
    pins: int = 0
    fill_id: int = 0  # completed copies from L2 (a verified reuse is not one)
    completed_at: float | None = None  # monotonic s of the last copy
    first_use_seen: bool = True


@dataclass(eq=False)
class ShardLease:
    """One sample's claim on a shard: keeps its L1 file from being evicted
    until ``DiskCache.release``. ``future`` resolves to the location to read."""

    key: str
    future: cf.Future[ShardLocation]
    _entry: _Entry | None = field(default=None, repr=False)
    _seen_fill: int = 0
    _used: bool = False
    _released: bool = False

    @classmethod
    def direct(cls, key: str, location: ShardLocation) -> ShardLease:
        """A lease without an L1 entry: the sample is read from ``location``."""
        return cls(key, _done(location))


def _done(location: ShardLocation) -> cf.Future[ShardLocation]:
    future: cf.Future[ShardLocation] = cf.Future()
    future.set_result(location)
    return future


def default_disk_budget(directory: Path) -> int:
    """90% of what the directory's filesystem could hold for the cache: its
    free space plus the shard files already there (bytes)."""
    directory.mkdir(parents=True, exist_ok=True)
    present = sum(p.stat().st_size for p in directory.iterdir() if _FINAL.match(p.name))
    return int(0.9 * (shutil.disk_usage(directory).free + present))


class _Abandoned(Exception):
    """A fill gave up without fault: the engine is stopping, or no room."""


class DiskCache:
    """The L1 tier over ``directory`` with a ``budget_bytes`` budget.
    ``fill_threads`` bound concurrent copies/verifications;
    ``on_source_read(nbytes)`` is told of every byte read from L2.
    Lifecycle: ``start()``, ``stop()``, or use as a context manager."""

    def __init__(
        self,
        directory: Path,
        budget_bytes: int,
        *,
        fill_threads: int = 2,
        on_source_read: Callable[[int], None] | None = None,
    ) -> None:
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        if fill_threads < 1:
            raise ValueError(f"fill_threads must be >= 1, got {fill_threads}")
        self.directory = Path(directory)
        self.budget_bytes = budget_bytes
        self._fill_threads = fill_threads
        self._on_source_read = on_source_read or (lambda _n: None)
        self._index: OrderedDict[str, _Entry] = OrderedDict()  # least recently leased first
        self._bad: set[str] = set()  # shards whose L2 copy failed its checksum
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._executor: cf.ThreadPoolExecutor | None = None
        self._held = 0
        self._tally = TierTally()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> DiskCache:
        """Create the directory, drop leftovers of crashed fills, index the
        shard files present (verified on first lease) and trim to the budget."""
        (self.directory / LOCKS_DIR).mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self._scan()
        self._executor = cf.ThreadPoolExecutor(self._fill_threads, thread_name_prefix="l1-fill")
        return self

    def stop(self) -> None:
        """Abort fills in progress (their temporary files are removed) and join
        the fill threads; leases still waiting resolve to L2."""
        self._stopping.set()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        with self._lock:
            stuck = [e for e in self._index.values() if e.state is _State.FILLING]
            for e in stuck:
                self._drop(e)
        for e in stuck:
            self._resolve_l2(e)

    def __enter__(self) -> DiskCache:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _scan(self) -> None:
        found: list[tuple[float, str, int]] = []
        removed = 0
        for path in self.directory.iterdir():
            name = path.name
            if name == LOCKS_DIR:
                continue
            if name.endswith(".tmp"):
                tmp = _TMP.match(name)
                try:
                    with self._stripe(tmp.group(1) if tmp else "00", blocking=False):
                        path.unlink(missing_ok=True)
                        removed += 1
                except BlockingIOError:
                    _LOG.info("L1: %s is being filled by another engine; left alone", path)
                continue
            final = _FINAL.match(name)
            if final and path.is_file():
                st = path.stat()
                found.append((st.st_mtime, final.group(1), st.st_size))
            else:
                _LOG.debug("L1: ignoring %s (not a cache file)", path)
        with self._lock:
            for _mtime, key, size in sorted(found):
                self._index[key] = _Entry(key, size, _State.UNVERIFIED)
                self._held += size
            trimmed = self._make_room(0)
        _LOG.info(
            "L1 cache %s: budget %d bytes; found %d shard files (%d bytes, checksummed on "
            "first use); removed %d temporary files%s",
            self.directory,
            self.budget_bytes,
            len(found),
            sum(size for *_, size in found),
            removed,
            "" if trimmed else "; still over budget",
        )

    # -- leases --------------------------------------------------------------

    def lease(self, shard: ShardEntry, source: Path) -> ShardLease:
        """Claim ``shard`` (whose canonical copy is ``source`` on L2) for one
        sample: pins its entry and starts a fill or a verification if needed."""
        key = shard.sha256
        with self._lock:
            e = self._index.get(key)
            if e is None:
                if (
                    self._executor is None
                    or key in self._bad
                    or shard.size_bytes > self.budget_bytes
                    or not self._make_room(shard.size_bytes)
                ):
                    return ShardLease.direct(key, ShardLocation(source, "L2"))
                e = self._index[key] = _Entry(key, shard.size_bytes, _State.FILLING)
                self._held += shard.size_bytes
                self._start_job(e, shard, source)
            elif e.state is _State.UNVERIFIED:
                if self._executor is None:
                    return ShardLease.direct(key, ShardLocation(source, "L2"))
                e.state = _State.FILLING
                self._start_job(e, shard, source)
            e.pins += 1
            self._index.move_to_end(key)
            assert e.future is not None  # set by _start_job or by an earlier one
            return ShardLease(key, e.future, e, e.fill_id)

    def use(self, lease: ShardLease, stalled_since: float | None = None) -> None:
        """A sample of ``lease`` goes to a worker now (its future is done):
        count an L1 hit (the file was ready or reused) or a miss (it had to be
        copied, or the sample reads L2), and the first use of a fresh fill."""
        if lease._used:
            return
        lease._used = True
        location = lease.future.result()
        now = time.monotonic()
        with self._lock:
            e = lease._entry
            if location.tier != "L1" or e is None or e.fill_id != lease._seen_fill:
                self._tally.misses += 1
            else:
                self._tally.hits += 1
            if e is not None and not e.first_use_seen and e.completed_at is not None:
                e.first_use_seen = True
                self._tally.first_use(e.completed_at, now, stalled_since)

    def release(self, lease: ShardLease) -> None:
        """End the claim (the sample was read, or will not be)."""
        if lease._released:
            return
        lease._released = True
        if lease._entry is not None:
            with self._lock:
                lease._entry.pins -= 1

    def is_bad(self, key: str) -> bool:
        """Whether a fill found the L2 copy of shard ``key`` corrupt."""
        with self._lock:
            return key in self._bad

    def add_read(self, nbytes: int) -> None:
        """Workers read ``nbytes`` of sample values from L1 files."""
        with self._lock:
            self._tally.bytes_read += nbytes

    def forget(self, key: str) -> None:
        """The L1 file of ``key`` vanished (removed by hand or by another
        engine): stop pointing workers at it."""
        with self._lock:
            e = self._index.get(key)
            if e is not None and e.state is _State.READY:
                _LOG.warning("L1: %s.lmdb vanished; it will be refilled on next use", key)
                self._drop(e)

    def counters(self) -> CacheCounters:
        with self._lock:
            return self._tally.counters(
                bytes_held=self._held,
                budget_bytes=self.budget_bytes,
                entries=len(self._index),
            )

    def file_path(self, key: str) -> Path:
        return self.directory / f"{key}.lmdb"

    # -- budget (callers hold self._lock) ---------------------------------------

    def _make_room(self, size: int) -> bool:
        """Evict unpinned, idle entries, least recently leased first, until
        ``size`` more bytes fit; False (nothing evicted) when they cannot."""
        if self._held + size <= self.budget_bytes:
            return True
        victims: list[_Entry] = []
        freed = 0
        for e in self._index.values():
            if e.pins == 0 and e.state is not _State.FILLING:
                victims.append(e)
                freed += e.size
                if self._held - freed + size <= self.budget_bytes:
                    break
        if self._held - freed + size > self.budget_bytes:
            return False
        for e in victims:
            self.file_path(e.key).unlink(missing_ok=True)
            self._drop(e)
            self._tally.evictions += 1
        return True

    def _drop(self, e: _Entry) -> None:
        if self._index.get(e.key) is e:
            del self._index[e.key]
            self._held -= e.size

    # -- fills ---------------------------------------------------------------

    def _start_job(self, e: _Entry, shard: ShardEntry, source: Path) -> None:
        assert self._executor is not None
        e.future = cf.Future()
        e.source = source
        self._executor.submit(self._job, e, shard, source)

    def _resolve_l2(self, e: _Entry) -> None:
        if e.future is not None and not e.future.done() and e.source is not None:
            e.future.set_result(ShardLocation(e.source, "L2"))

    def _job(self, e: _Entry, shard: ShardEntry, source: Path) -> None:
        """Verify the file present for ``e``, or copy the shard from L2."""
        t0 = time.monotonic()
        final = self.file_path(e.key)
        copied = False
        try:
            with self._stripe(e.key):
                if not self._valid(final, shard):
                    with self._lock:
                        fits = self._resize(e, shard.size_bytes)
                    if not fits:
                        raise _Abandoned("no room")
                    self._copy(source, final, shard)
                    copied = True
        except Exception as exc:
            if isinstance(exc, DataLossError):
                _LOG.error("L1: %s; serving shard %d from L2", exc, shard.shard_id)
                with self._lock:
                    self._bad.add(e.key)
            elif not isinstance(exc, _Abandoned):
                _LOG.exception("L1: fill of shard %d failed; serving it from L2", shard.shard_id)
            with self._lock:
                self._drop(e)
            self._resolve_l2(e)
            return
        now = time.monotonic()
        with self._lock:
            e.state = _State.READY
            if copied:
                e.fill_id += 1
                e.completed_at = now
                e.first_use_seen = False
                self._tally.filled(now - t0)
        assert e.future is not None
        e.future.set_result(ShardLocation(final, "L1", fallback=source))

    def _resize(self, e: _Entry, size: int) -> bool:
        """Account ``e`` at ``size`` bytes (a found file may have been truncated)."""
        if e.size == size:
            return True
        self._held -= e.size
        e.size = 0
        if size > self.budget_bytes or not self._make_room(size):
            return False
        e.size = size
        self._held += size
        return True

    def _valid(self, path: Path, shard: ShardEntry) -> bool:
        """Whether ``path`` holds exactly ``shard``; a bad file is deleted."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return False
        problem = None
        if size != shard.size_bytes:
            problem = f"{size} bytes, expected {shard.size_bytes} (truncated?)"
        elif file_sha256(path, _CHUNK) != shard.sha256:
            problem = "SHA-256 differs from the manifest (corrupt)"
        if problem is None:
            return True
        _LOG.warning("L1: discarding %s: %s; refilling shard %d", path, problem, shard.shard_id)
        path.unlink(missing_ok=True)
        return False

    def _copy(self, source: Path, final: Path, shard: ShardEntry) -> None:
        tmp = final.with_name(f"{final.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        h = hashlib.sha256()
        n = 0
        try:
            with open(source, "rb") as src, open(tmp, "xb") as dst:
                while chunk := src.read(_CHUNK):
                    if self._stopping.is_set():
                        raise _Abandoned("stopping")
                    n += len(chunk)
                    h.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            if n != shard.size_bytes or h.hexdigest() != shard.sha256:
                raise DataLossError(
                    f"{source}: shard {shard.shard_id} read {n} bytes with SHA-256 "
                    f"{h.hexdigest()[:16]}..., the manifest says {shard.size_bytes} bytes, "
                    f"{shard.sha256[:16]}...: the shared copy is corrupt"
                )
            os.replace(tmp, final)
            fsync_dir(self.directory)
        finally:
            self._on_source_read(n)
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _stripe(self, key: str, *, blocking: bool = True) -> Iterator[None]:
        """Exclusive flock shared with other engines using this directory."""
        fd = os.open(self.directory / LOCKS_DIR / f"{key[:2]}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            yield
        finally:
            os.close(fd)
