"""Shared-memory segments for the same-host path (client <-> engine).

A segment is one file in ``/dev/shm`` created by a client and attached by an
engine (``AttachSharedMemory`` in ``protos/dataengine/v1/dataengine.proto``
gives the layout): a header with a magic, a 16-byte nonce and the slot
geometry, one ``done`` word per slot, then the slots. Engine workers write a
serialized ``Sample`` at the start of a slot; the engine's front stores the
request's ticket in the slot's done word once no worker will write the slot
again, and only then may the client hand the slot out again.

No leftover segments. A segment's name says who made it:
``medstream-<pid namespace inode>-<pid>-<process start time>-<32 hex>``.
While a client and an engine share it, the open ``AttachSharedMemory`` call
is the lease; whichever side sees it end unlinks the name. A name left by
two processes that both died (``kill -9`` of both) is removed by the next
``sweep_stale`` on that host, which unlinks every segment whose creator (in
the caller's pid namespace) is no longer running. Names are never reused,
so a restart never finds a stale segment in its way. The whole size is
allocated at creation (``posix_fallocate``): a full ``/dev/shm`` is an error
then, not a ``SIGBUS`` on a later write.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import mmap
import os
import re
import secrets
import shutil
import stat
import struct
import weakref
from pathlib import Path

from dataengine.errors import DataEngineError
from dataengine.transport import SHARED_MEMORY, TCP, TRANSPORTS

__all__ = [
    "SCRATCH_RE",
    "SHARED_MEMORY",
    "SHM_DIR",
    "TCP",
    "TRANSPORTS",
    "Segment",
    "SharedMemoryError",
    "creator_alive",
    "scratch_prefix",
    "segment_name",
    "sweep_stale",
]

_LOG = logging.getLogger(__name__)
SHM_DIR = Path("/dev/shm")
MAGIC = b"MEDSHM01"
PAGE = 4096
_HEADER = struct.Struct("<8s16sII QQ")  # magic, nonce, slots, reserved, slot bytes, data offset
_DONE_AT = 64
NAME_RE = re.compile(r"^medstream-(\d+)-(\d+)-(\d+)-([0-9a-f]{32})$")
# Decoders' scratch copies (pyedflib and wfdb read only from paths): named
# for their creator like segments, so a killed worker's are swept too.
SCRATCH_RE = re.compile(r"^medstream-scratch-(\d+)-(\d+)-(\d+)-")


class SharedMemoryError(DataEngineError):
    """A segment cannot be created, opened or used (no room, gone, not ours)."""

    kind = "data_loss"


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat``
    field 22), or None when no such process runs."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 counted from 1; 3 fields precede the split


def segment_name() -> str:
    """A fresh segment name for this process (see the module docstring)."""
    pid = os.getpid()
    return f"medstream-{_pid_namespace()}-{pid}-{_start_time(pid) or 0}-{secrets.token_hex(16)}"


def scratch_prefix() -> str:
    """The name prefix of this process's scratch files and folders (a
    ``tempfile`` prefix: a random part follows)."""
    pid = os.getpid()
    return f"medstream-scratch-{_pid_namespace()}-{pid}-{_start_time(pid) or 0}-"


def creator_alive(name: str) -> bool | None:
    """Whether the process that created segment or scratch entry ``name``
    still runs: None when the name is not one of ours, or its creator lives
    in another pid namespace, or this process cannot read its own (no
    /proc): it cannot be judged from here."""
    match = NAME_RE.match(name) or SCRATCH_RE.match(name)
    ns = _pid_namespace()
    if match is None or ns == 0 or int(match.group(1)) != ns:
        return None
    return _start_time(int(match.group(2))) == int(match.group(3))


def sweep_stale(directory: Path = SHM_DIR) -> list[str]:
    """Remove the segments and scratch entries in ``directory`` whose creator
    has exited (in this pid namespace); return their names."""
    removed = []
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            if creator_alive(path.name) is not False:
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path.name)
    if removed:
        _LOG.info("removed %d stale entries in %s: %s", len(removed), directory, ", ".join(removed))
    return removed


def _close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _layout(slots: int, slot_bytes: int) -> tuple[int, int]:
    """Data offset and total size (bytes) of a segment."""
    data_offset = -(-(_DONE_AT + 8 * slots) // PAGE) * PAGE
    return data_offset, data_offset + slots * slot_bytes


def _inconsistent(data_offset: int, slots: int, slot_bytes: int, size: int) -> bool:
    """The header's geometry does not describe a file of ``size`` bytes."""
    want_offset, want_size = _layout(slots, slot_bytes)
    return data_offset != want_offset or slot_bytes % PAGE != 0 or size < want_size


class Segment:
    """One mapped segment. ``create`` makes one (the client); ``open``
    attaches an existing one by name (the engine's front and workers).
    ``slots`` slots of ``slot_bytes`` bytes (a multiple of 4096) each."""

    def __init__(self, path: Path, fd: int, mm: mmap.mmap, nonce: bytes) -> None:
        self.path = path
        self.name = path.name
        self._fd = fd
        self._mm = mm
        self.nonce = nonce
        _, _, self.slots, _, self.slot_bytes, self.data_offset = _HEADER.unpack_from(mm, 0)
        self.size = self.data_offset + self.slots * self.slot_bytes
        self.closed = False
        # Unreferenced, the mapping is unmapped by the garbage collector; the
        # descriptor goes with it.
        self._finalizer = weakref.finalize(self, _close_fd, fd)

    @classmethod
    def create(cls, slots: int, slot_bytes: int, directory: Path = SHM_DIR) -> Segment:
        """A new segment of ``slots`` slots of at least ``slot_bytes`` bytes,
        all of it allocated now. ``SharedMemoryError`` when there is no room."""
        slot_bytes = -(-slot_bytes // PAGE) * PAGE
        data_offset, size = _layout(slots, slot_bytes)
        path = directory / segment_name()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise SharedMemoryError(
                f"cannot create a segment in {directory}: {exc.strerror}"
            ) from None
        try:
            os.posix_fallocate(fd, 0, size)
            mm = mmap.mmap(fd, size)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise SharedMemoryError(
                f"cannot allocate a {size}-byte segment in {directory}: {exc.strerror}"
            ) from None
        nonce = secrets.token_bytes(16)
        _HEADER.pack_into(mm, 0, MAGIC, nonce, slots, 0, slot_bytes, data_offset)
        return cls(path, fd, mm, nonce)

    @classmethod
    def open(cls, name: str, nonce: bytes | None = None, directory: Path = SHM_DIR) -> Segment:
        """Attach segment ``name``; with ``nonce``, check it is the one the
        client meant. ``SharedMemoryError`` says why not (not found: another
        host or another /dev/shm; wrong magic or nonce; truncated)."""
        if NAME_RE.match(name) is None:
            raise SharedMemoryError(f"{name!r} is not a medstream segment name")
        path = directory / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except OSError as exc:
            raise SharedMemoryError(f"cannot open {path}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size < _DONE_AT:
                raise SharedMemoryError(f"{path} is not a segment ({info.st_size} bytes)")
            mm = mmap.mmap(fd, info.st_size)
        except BaseException:
            os.close(fd)
            raise
        magic, found, slots, _, slot_bytes, data_offset = _HEADER.unpack_from(mm, 0)
        problem = ""
        if magic != MAGIC:
            problem = "wrong magic"
        elif nonce is not None and not hmac.compare_digest(found, nonce):
            problem = "wrong nonce"
        elif _inconsistent(data_offset, slots, slot_bytes, info.st_size):
            problem = f"truncated or inconsistent ({info.st_size} bytes)"
        if problem:
            mm.close()
            os.close(fd)
            raise SharedMemoryError(f"{path}: {problem}")
        return cls(path, fd, mm, found)

    # -- slots -----------------------------------------------------------

    def slot_range(self, slot: int) -> tuple[int, int]:
        """Byte range ``[start, stop)`` of ``slot`` in the segment."""
        if not 0 <= slot < self.slots:
            raise SharedMemoryError(f"{self.name}: slot {slot} is outside 0..{self.slots - 1}")
        start = self.data_offset + slot * self.slot_bytes
        return start, start + self.slot_bytes

    @property
    def buffer(self) -> mmap.mmap:
        """The whole mapping (offsets as in ``slot_range``)."""
        return self._mm

    def done(self, slot: int) -> int:
        """The ticket last stored in ``slot``'s done word;
        ``SharedMemoryError`` for a slot the segment does not have."""
        if not 0 <= slot < self.slots:
            raise SharedMemoryError(f"{self.name}: slot {slot} is outside 0..{self.slots - 1}")
        return int(struct.unpack_from("<Q", self._mm, _DONE_AT + 8 * slot)[0])

    def set_done(self, slot: int, ticket: int) -> None:
        """Store ``ticket`` in ``slot``'s done word (no-op once closed)."""
        if not self.closed and 0 <= slot < self.slots:
            struct.pack_into("<Q", self._mm, _DONE_AT + 8 * slot, ticket)

    def check(self, stop: int = 0) -> None:
        """``SharedMemoryError`` unless the segment still has its name and at
        least ``max(stop, size)`` bytes: a vanished or truncated segment must
        not be read (a read past its end is a SIGBUS)."""
        try:
            info = os.fstat(self._fd)
        except OSError as exc:
            raise SharedMemoryError(f"{self.name}: {exc.strerror}") from None
        if info.st_nlink == 0:
            raise SharedMemoryError(f"{self.name}: the segment vanished (unlinked)")
        if info.st_size < max(stop, self.size):
            raise SharedMemoryError(
                f"{self.name}: the segment was truncated to {info.st_size} bytes "
                f"(needs {max(stop, self.size)})"
            )

    def read_into(self, offset: int, dest: memoryview) -> int:
        """Copy ``dest.nbytes`` bytes from ``offset`` into ``dest`` with a
        read of the file, not the mapping: a segment truncated meanwhile
        gives a short count (returned), never a SIGBUS."""
        try:
            return os.preadv(self._fd, [dest], offset)
        except OSError:
            return 0

    @property
    def linked(self) -> bool:
        """The segment's name still exists (nobody unlinked it)."""
        try:
            return os.fstat(self._fd).st_nlink > 0
        except OSError:
            return False

    # -- lifetime --------------------------------------------------------

    def unlink(self) -> None:
        """Remove the name (the memory lives on while mapped). Idempotent."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def close(self) -> None:
        """Unmap and close. Views still exported keep the mapping until they
        go (the memory is then freed by the garbage collector)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(BufferError):
            self._mm.close()
        self._finalizer()
