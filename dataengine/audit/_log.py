"""``AuditLog``: one writer appending hash-chained JSON lines to one file.

Each ``append`` writes one line, ``{caller's fields, time, seq, prev_hash,
hash}`` as canonical JSON plus a newline, with a single ``write`` on a file
opened ``O_APPEND``, under a lock (thread-safe). The file is held with an
exclusive ``flock`` while open, so two writers never interleave their chains
(``wait=True`` waits for the other writer to close; else ``AuditError``).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from dataengine.audit._canonical import RESERVED, canonical_json, line_hash, utc_now
from dataengine.audit._chain import AuditError, scan_chain
from dataengine.audit._durability import Durability, parse_durability

__all__ = ["AuditLog"]

_LOG = logging.getLogger(__name__)

TORN_SUFFIX = ".torn"
"""A torn last line found on open is moved to ``LOG.torn`` (appended), for
the record, before the log is cut back to its last complete line."""


def _lock(fd: int, path: Path, wait: bool) -> None:
    """Hold ``fd`` with an exclusive ``flock``: ``AuditError`` when another
    writer holds it (unless ``wait``). A filesystem without locks (Lustre
    mounted without ``flock``) is logged and accepted: one writer per file
    is then the deployment's to ensure (one log per engine)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        raise AuditError(f"audit log {path} is held by another writer") from None
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOLCK):
            raise
        _LOG.warning("audit log %s: no file locks on this filesystem (%s)", path, exc)


class AuditLog:
    """An open, append-only audit chain. Use ``AuditLog.open``; close with
    ``close()`` or a ``with`` block."""

    def __init__(self, path: Path, fd: int, durability: Durability, seq: int, head: str) -> None:
        self.path = path
        self.durability = durability
        self._fd: int | None = fd
        self._seq = seq
        self._head = head
        self._lock = threading.Lock()
        self._dirty = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if durability.mode == "interval":
            self._flusher = threading.Thread(
                target=self._flush_loop, name=f"audit-flush-{path.name}", daemon=True
            )
            self._flusher.start()

    @classmethod
    def open(
        cls, path: Path | str, durability: str | Durability = "fsync", *, wait: bool = False
    ) -> AuditLog:
        """Open (or create, mode 0640) the log at ``path`` to append to it.

        The whole chain is checked first (``scan_chain``; about the speed of
        SHA-256 over the file, once). A last line without its newline, torn by
        a crash, is moved to ``LOG.torn`` and cut off, with a warning; the
        earlier lines are kept and the chain goes on from the last complete
        line. Any other break raises ``AuditError`` naming the line: a
        tampered log is never appended to (move it aside, keep it as
        evidence, and start a new one). ``durability``: see
        ``parse_durability``. ``wait``: wait for another writer to close the
        file instead of raising ``AuditError``.
        """
        path = Path(path)
        mode = parse_durability(durability)
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        try:
            _lock(fd, path, wait)
            with os.fdopen(os.dup(fd), "rb") as stream:
                scan = scan_chain(stream)
            if scan.torn is not None and scan.bad_line == scan.lines + 1:
                _LOG.warning(
                    "audit log %s: line %d is torn (%d bytes without a newline, from a crash "
                    "during a write); moved to %s%s and cut off; the chain goes on from seq %d",
                    path, scan.bad_line, len(scan.torn), path.name, TORN_SUFFIX, scan.head_seq,
                )  # fmt: skip
                with open(path.with_name(path.name + TORN_SUFFIX), "ab") as torn:
                    torn.write(scan.torn + b"\n")
                    torn.flush()
                    os.fsync(torn.fileno())
                os.ftruncate(fd, scan.good_bytes)
                os.fsync(fd)
            elif not scan.ok:
                raise AuditError(
                    f"audit log {path} is broken at line {scan.bad_line}: {scan.reason}; "
                    "it will not be appended to: move it aside (keep it as evidence) "
                    "and start a new log"
                )
        except BaseException:
            os.close(fd)
            raise
        _LOG.info(
            "audit log %s open: %d lines, head seq %d, durability %s",
            path, scan.lines, scan.head_seq, mode,
        )  # fmt: skip
        return cls(path, fd, mode, scan.head_seq, scan.head_hash)

    @property
    def seq(self) -> int:
        """The seq of the last line written (0: none yet)."""
        return self._seq

    @property
    def head(self) -> str:
        """The hash of the last line written (``GENESIS`` when none)."""
        return self._head

    def append(self, **fields: Any) -> dict[str, Any]:
        """Write one line of ``fields`` (JSON values: str, int, float, bool,
        None, lists and dicts of them) and return it as written, with
        ``time``, ``seq``, ``prev_hash`` and ``hash`` added. Raises
        ``ValueError`` for a reserved field name or a value JSON cannot hold,
        ``AuditError`` when the log is closed or the write fails (then the
        file is cut back to its last complete line)."""
        clash = RESERVED & fields.keys()
        if clash:
            raise ValueError(f"audit fields {sorted(clash)} are written by the chain itself")
        with self._lock:
            if self._fd is None:
                raise AuditError(f"audit log {self.path} is closed")
            line: dict[str, Any] = {
                **fields,
                "time": utc_now(),
                "seq": self._seq + 1,
                "prev_hash": self._head,
            }
            line["hash"] = line_hash(line)
            data = canonical_json(line) + b"\n"
            self._write(self._fd, data)
            if self.durability.mode == "fsync":
                os.fsync(self._fd)
            else:
                self._dirty = True
            self._seq, self._head = line["seq"], line["hash"]
        return line

    def _write(self, fd: int, data: bytes) -> None:
        """Write ``data`` whole, or cut the file back to where it was and raise."""
        start = os.fstat(fd).st_size
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            try:
                os.ftruncate(fd, start)
            except OSError:
                _LOG.error("audit log %s: could not cut back a failed write", self.path)
            raise AuditError(f"audit log {self.path}: write failed: {exc}") from exc

    def flush(self) -> None:
        """``fsync`` now whatever the durability."""
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                self._dirty = False

    def _flush_loop(self) -> None:
        # fsync runs outside the lock, so appends do not wait for the disk;
        # close() joins this thread before it closes the file.
        while not self._stop.wait(self.durability.interval_s):
            with self._lock:
                fd, dirty, self._dirty = self._fd, self._dirty, False
            if fd is None:
                return
            if dirty:
                try:
                    os.fsync(fd)
                except OSError as exc:
                    _LOG.error("audit log %s: fsync failed: %s", self.path, exc)

    def close(self) -> None:
        """``fsync``, release the file and stop the flusher (idempotent)."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
        with self._lock:
            if self._fd is None:
                return
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)  # releases the flock

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r}, seq={self._seq}, durability={self.durability})"
