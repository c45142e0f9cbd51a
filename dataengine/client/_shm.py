"""The client's same-host links: one shared-memory segment per engine that
can see it, and the slots of that segment.

``SharedLink.open`` creates a segment (``dataengine/shm.py``) and calls the
engine's ``AttachSharedMemory``. An engine on another host (or in another
/dev/shm) cannot open it and answers FAILED_PRECONDITION: the client stays
on TCP with that engine. An engine that attached keeps the call open: the
lease. A thread watches it; when it ends (the engine stopped or died) the
link is broken, the segment's name is unlinked at once, and the fetcher
goes back to TCP for that engine (and tries a new link once the engine is
back).

Slots. A request's ids get one slot each and a fresh ticket. A slot may be
handed out again only once the engine stored that ticket in its done word
(it will not write the slot again: served, failed or cancelled) and the
client released it: after the batch holding its frame was assembled, or,
for a slot whose frame never arrived, when its call ended. A frame is
read only after checking that the segment still has its name and its size
(``Segment.check``): a vanished or truncated segment is a ``data_loss`` for
the link, never a read past the mapping's end. Once the lease ended the name
is gone on purpose (the client unlinks it then; an engine that stops leaves
that to the client), and frames still in flight are read if the size holds.
The same check runs before each request's slots are handed out, so a
segment damaged between requests is noticed even when the engine's
workers, finding it first, answered over TCP.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable

import grpc

from dataengine.client._collate import Frame
from dataengine.client._lease import SlotTable, hold_lease
from dataengine.frame import FrameError, read_sample
from dataengine.shm import Segment, SharedMemoryError, sweep_stale
from dataengine.transport import SHARED_MEMORY
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

__all__ = ["NotSameHostError", "SharedLink"]

_LOG = logging.getLogger(__name__)
_swept = False
_sweep_lock = threading.Lock()


class NotSameHostError(SharedMemoryError):
    """The engine cannot open this client's segment (another host or another
    /dev/shm): shared memory is not possible with it."""


def _sweep_once() -> None:
    """Remove segments left by dead processes, once per client process."""
    global _swept
    with _sweep_lock:
        if not _swept:
            _swept = True
            sweep_stale()


class SharedLink:
    """One engine's link (see the module docstring). Thread-safe."""

    transport = SHARED_MEMORY

    def __init__(self, endpoint: str, segment: Segment) -> None:
        self.endpoint = endpoint
        self.segment = segment
        self.broken: str | None = None
        self.engine_pid = 0
        self._lock = threading.Lock()
        # A slot is free again once released and its done word holds its ticket.
        self._table = SlotTable(segment.slots, lambda slot, ticket: segment.done(slot) == ticket)
        self._call: grpc.Call | None = None

    @classmethod
    def open(
        cls,
        endpoint: str,
        stub: pb_grpc.DataEngineStub,
        slots: int,
        slot_bytes: int,
        timeout_s: float,
    ) -> SharedLink:
        """Create a segment and have the engine attach it. Raises
        ``NotSameHostError`` when the engine cannot see it, and
        ``SharedMemoryError`` for anything else (no room in /dev/shm, no
        answer within ``timeout_s``)."""
        _sweep_once()
        link = cls(endpoint, Segment.create(slots, slot_bytes))
        try:
            link._attach(stub, timeout_s)
        except BaseException:
            link.close()
            raise
        return link

    def _attach(self, stub: pb_grpc.DataEngineStub, timeout_s: float) -> None:
        seg = self.segment
        call = stub.AttachSharedMemory(pb.AttachRequest(segment=seg.name, nonce=seg.nonce))
        self._call = call
        try:
            reply = hold_lease(call, f"engine-shm-{self.endpoint}", timeout_s, self._break)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED):
                raise NotSameHostError(f"{self.endpoint}: {exc.details()}") from None
            raise SharedMemoryError(f"{self.endpoint}: attach failed: {exc}") from None
        self.engine_pid = reply.engine_pid
        if self.broken is not None:
            raise SharedMemoryError(f"{self.endpoint}: {self.broken}")
        _LOG.info(
            "engine %s (pid %d) attached shared-memory segment %s (%d slots of %d bytes)",
            self.endpoint,
            self.engine_pid,
            seg.name,
            seg.slots,
            seg.slot_bytes,
        )

    # -- slots -----------------------------------------------------------

    def allocate(self, count: int) -> tuple[int, list[int]] | None:
        """A fresh ticket and ``count`` free slots, or None (broken, or not
        enough free slots: the request goes over TCP).

        ``SharedMemoryError`` when the segment vanished or was truncated: the
        link is then broken (no slot of it may be written or read again).
        Checked here, before each request, because the engine's workers
        check too and would quietly answer over TCP: the client would keep
        handing out slots of a dead segment and never learn why."""
        seg = self.segment
        if self.broken is not None:
            return None
        try:
            seg.check()
        except SharedMemoryError as exc:
            self._break(str(exc))
            raise
        return None if self.broken is not None else self._table.take(count)

    def frame(self, slot: int, size: int, sample_id: int) -> Frame:
        """Read the frame the engine wrote into ``slot`` for ``sample_id``
        (the slot stays handed out until ``release``). ``SharedMemoryError``
        or ``FrameError`` (both ``data_loss``) when it cannot be trusted."""
        seg = self.segment
        start, stop = seg.slot_range(slot)
        if size > stop - start:
            raise FrameError(f"{seg.name}: slot {slot} holds {stop - start} bytes, not {size}")
        try:
            seg.check(start + size)
        except SharedMemoryError:
            # ``_break`` marks the link before it unlinks: a name gone with the
            # link broken went on purpose (the lease ended), and the frames
            # written before are good while the file keeps its size.
            if self.broken is None or seg.buffer.size() < seg.size:
                raise
        view = read_sample(seg.buffer, start, start + size)
        if view.sample_id != sample_id:
            raise FrameError(
                f"{seg.name}: slot {slot} holds sample {view.sample_id}, not {sample_id}"
            )
        # The tensors' bytes are copied later by a read of the file
        # (``Segment.read_into``): a truncation by then is a short read.
        return Frame(seg.buffer, view, seg.read_into)

    def slots_message(self, ticket: int, slots: list[int]) -> pb.SharedSlots:
        """The request field naming these slots of this segment."""
        return pb.SharedSlots(segment=self.segment.name, ticket=ticket, slots=slots)

    def release(self, slots: Iterable[int]) -> None:
        """The client is done with these slots (their frames are copied, or
        their call ended without them); each is free again once its done
        word holds its ticket."""
        self._table.release(slots)

    # -- lifetime --------------------------------------------------------

    def _break(self, reason: str) -> None:
        with self._lock:
            if self.broken is not None:
                return
            self.broken = reason
        self.segment.unlink()
        _LOG.info("shared memory with %s off: %s", self.endpoint, reason)

    def close(self, reason: str = "closed by the client") -> None:
        """End the lease and unlink the segment (idempotent). The mapping
        stays while frames read from it are still referenced (a batch not
        yet assembled); it is unmapped when the last of them goes."""
        self._break(reason)
        if self._call is not None:
            with contextlib.suppress(Exception):
                self._call.cancel()
