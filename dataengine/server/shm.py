"""The engine's side of the same-host path: the segments clients attached.

``AttachSharedMemory`` opens a client's segment by name (only
``medstream-...`` names in /dev/shm, and only when its nonce matches the
request's), answers once, and keeps the call open: while it is open the
segment is leased to this engine, and requests may name it. An engine
started with ``--no-shared-memory`` refuses (FAILED_PRECONDITION: the
client stays on TCP).

The lease ends when the client ends the call (it closed the link or died:
gRPC cancels the call when the connection drops); the engine then unlinks
the segment's name, as the client may not be there to do it. It also ends
when the engine stops, or when a request finds the segment vanished or
truncated; the engine then leaves the name to the client, which unlinks it
when it sees the call end: until then its frames already in flight are
still read from a segment that has its name (a name gone under a live
lease means someone else removed it). Either way the segment is forgotten
at once; requests still in flight keep the mapping they hold until they
finish.

``SharedTarget`` is one request's slots in a leased segment: where the
workers write each sample (``task_target``), and the done words the front
stores when it will not write a slot again (served, failed, cancelled).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from dataengine.errors import ConfigError
from dataengine.shm import Segment, SharedMemoryError
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["SharedSegments", "SharedTarget"]

_LOG = logging.getLogger(__name__)
_LEASE_POLL_S = 0.5


@dataclass(frozen=True)
class SharedTarget:
    """The slots of one request: ``slots[i]`` receives the request's i-th id."""

    segment: Segment
    ticket: int
    slots: list[int]

    def task_target(self, slot: int) -> tuple[str, int, int]:
        """What a worker needs to write into ``slot``: segment name, start
        offset and capacity (bytes)."""
        start, stop = self.segment.slot_range(slot)
        return self.segment.name, start, stop - start

    def done(self, slot: int) -> None:
        """The engine will not write ``slot`` again for this request. Not
        stored when the segment vanished or was truncated: the client reads
        none of its slots again, and a done word past a truncated file's end
        is a SIGBUS."""
        try:
            self.segment.check()
        except SharedMemoryError:
            return
        self.segment.set_done(slot, self.ticket)

    def done_when(self, future: cf.Future[Any], slot: int) -> None:
        """Mark ``slot`` done once ``future`` (its worker task) has finished,
        however it ends: only then is no worker writing it."""
        future.add_done_callback(lambda _: self.done(slot))


@dataclass(frozen=True)
class _Lease:
    """One attached segment, and the event that ends its lease early (the
    segment was found vanished or truncated)."""

    segment: Segment
    revoked: threading.Event


class SharedSegments:
    """Leased segments by name, and the ``AttachSharedMemory`` RPC;
    ``enabled=False`` (``--no-shared-memory``) refuses every attach."""

    def __init__(self, engine_id: str, enabled: bool = True) -> None:
        self._engine_id = engine_id
        self.enabled = enabled
        self._lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}
        self._stopping = threading.Event()

    @property
    def count(self) -> int:
        """Segments leased now."""
        with self._lock:
            return len(self._leases)

    def target(self, shared: pb.SharedSlots, ids: int) -> SharedTarget | None:
        """The request's ``SharedTarget`` (None: no slots asked for, or the
        segment is not leased here: the request is served over TCP).
        ``ConfigError`` when the slots do not fit the segment or the ids."""
        if not shared.segment:
            return None
        with self._lock:
            lease = self._leases.get(shared.segment)
        if lease is None:
            return None
        segment = lease.segment
        try:
            segment.check()
        except SharedMemoryError as exc:
            # Its workers would find the same and answer over TCP sample by
            # sample; ending the lease tells the client once.
            _LOG.warning("shared-memory segment %s unusable, lease ended: %s", segment.name, exc)
            lease.revoked.set()
            return None
        slots = list(shared.slots)
        if len(slots) != ids:
            raise ConfigError("shared.slots", f"{len(slots)} slots for {ids} sample ids")
        bad = [s for s in slots if not 0 <= s < segment.slots]
        if bad:
            raise ConfigError(
                "shared.slots", f"slot {bad[0]} is outside the segment's 0..{segment.slots - 1}"
            )
        return SharedTarget(segment, int(shared.ticket), slots)

    def Attach(
        self, request: pb.AttachRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.AttachReply]:
        """Open the client's segment and hold it while the call is open."""
        if not self.enabled:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "shared memory is off on this engine (--no-shared-memory): use TCP",
            )
            raise AssertionError("unreachable: context.abort raises")
        try:
            segment = Segment.open(request.segment, bytes(request.nonce))
        except SharedMemoryError as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"not attachable here: {exc}")
            raise AssertionError("unreachable: context.abort raises") from None
        ended = threading.Event()  # the client ended the call, or its connection dropped
        context.add_callback(ended.set)
        lease = _Lease(segment, threading.Event())
        with self._lock:
            self._leases[segment.name] = lease
        _LOG.info("shared-memory segment %s attached (%d slots)", segment.name, segment.slots)
        try:
            yield pb.AttachReply(engine_pid=os.getpid(), engine_id=self._engine_id)
            while not (
                ended.wait(_LEASE_POLL_S) or self._stopping.is_set() or lease.revoked.is_set()
            ):
                pass
        finally:
            with self._lock:
                if self._leases.get(segment.name) is lease:
                    del self._leases[segment.name]
            if ended.is_set() or not context.is_active():
                segment.unlink()  # the client may be gone: nobody else would
            _LOG.info("shared-memory segment %s released", segment.name)

    def stop(self) -> None:
        """End every lease: the engine is stopping (clients go back to TCP
        with the engines that stay)."""
        self._stopping.set()
