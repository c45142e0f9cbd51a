"""The client's TCP data channel to an engine on another host.

``ChannelLink.open`` calls ``OpenDataChannel`` (the lease, watched by a
thread like a shared-memory link's), connects to the engine's data port on
the host the endpoint names, and presents the token. A reader thread then
takes each frame off the socket straight into its slot of a local receive
buffer (``recv_into``: the kernel's copy is the only one before the batch
copy), and marks the slot filled with the frame's ticket. The gRPC stream
brings the ``SharedRef``; ``frame`` waits until the reader has filled that
slot for its current ticket.

Slots follow the same rules as shared memory (``_shm.py``), without done
words: a frame carries its ticket, and the reader drops (reads into a
scratch buffer) any frame whose ticket is not the one its slot is handed
out with now, so a late frame of a cancelled request never overwrites a
slot that was handed out again. A frame header that does not fit (a slot
out of range, a size over the slot) breaks the link; so does the socket
closing, or the lease ending. The fetcher then goes back to plain gRPC for
that engine.

With TLS (``ClientTLS``) the connection is a TLS one, verified against the
same CA as the gRPC channel and with the same client certificate.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable

import grpc
import numpy as np

from dataengine.client._collate import Frame
from dataengine.client._lease import SlotTable, hold_lease
from dataengine.frame import FrameError, read_sample
from dataengine.security.tls import ClientTLS
from dataengine.shm import SharedMemoryError
from dataengine.transport import CHANNEL_MAGIC, DATA_CHANNEL, FRAME_HEADER
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

__all__ = ["ChannelLink"]

_LOG = logging.getLogger(__name__)
_RECEIVE_BUFFER = 8 << 20
_FRAME_WAIT_S = 30.0  # the engine sent the frame before its reference
_SCRATCH = 1 << 20


def _host(endpoint: str) -> str:
    host = endpoint.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


class ChannelLink:
    """One engine's data channel (see the module docstring). Thread-safe."""

    transport = DATA_CHANNEL

    def __init__(
        self,
        endpoint: str,
        slots: int,
        slot_bytes: int,
        on_cpu: Callable[[float], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._on_cpu = on_cpu  # told the reader thread's CPU seconds per frame
        self.slots = slots
        self.slot_bytes = -(-slot_bytes // 4096) * 4096
        self.broken: str | None = None
        self.token = b""
        # Touched once now: a first write into fresh pages costs a page fault
        # and zeroing per 4 KiB, more than the receive itself.
        self._memory = np.zeros(self.slots * self.slot_bytes, dtype=np.uint8)
        self._memory.fill(0)
        self._cond = threading.Condition()
        self._table = SlotTable(slots)  # frames carry their ticket: no done words
        self._filled: dict[int, tuple[int, int]] = {}  # slot -> (ticket, size) received
        self._call: grpc.Call | None = None
        self._sock: socket.socket | None = None

    @classmethod
    def open(
        cls,
        endpoint: str,
        stub: pb_grpc.DataEngineStub,
        slots: int,
        slot_bytes: int,
        timeout_s: float,
        on_cpu: Callable[[float], None] | None = None,
        tls: ClientTLS | None = None,
    ) -> ChannelLink:
        """Open the lease and the connection; ``SharedMemoryError`` (kind
        ``data_loss``) says why not (no data port, cannot connect, refused).
        ``on_cpu(seconds)`` is told what the reader thread spent per frame.
        ``tls``: the connection is TLS, verified as the gRPC channel is."""
        link = cls(endpoint, slots, slot_bytes, on_cpu)
        try:
            link._connect(stub, timeout_s, tls)
        except BaseException:
            link.close("the channel could not be opened")
            raise
        return link

    def _connect(
        self, stub: pb_grpc.DataEngineStub, timeout_s: float, tls: ClientTLS | None
    ) -> None:
        call = stub.OpenDataChannel(pb.DataChannelRequest())
        self._call = call
        try:
            reply = hold_lease(call, f"engine-chan-{self.endpoint}", timeout_s, self._break)
        except grpc.RpcError as exc:
            raise SharedMemoryError(
                f"{self.endpoint}: no data channel: {exc.code().name}: {exc.details()}"
            ) from None
        self.token = bytes(reply.token)
        try:
            sock = socket.create_connection((_host(self.endpoint), reply.port), timeout_s)
        except OSError as exc:
            raise SharedMemoryError(
                f"{self.endpoint}: cannot connect to data port {reply.port}: {exc}"
            ) from None
        self._sock = sock
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
            if tls is not None:  # the handshake, within the connect timeout
                sock = self._sock = tls.wrap(sock, _host(self.endpoint))
            sock.sendall(CHANNEL_MAGIC + self.token)
            ack = bytearray(len(CHANNEL_MAGIC))
            self._exactly(sock, memoryview(ack))
            if bytes(ack) != CHANNEL_MAGIC:
                raise OSError("the engine refused the token")
            sock.settimeout(None)
        except OSError as exc:
            raise SharedMemoryError(f"{self.endpoint}: data channel hello: {exc}") from None
        reader = threading.Thread(target=self._read, name=f"engine-data-{self.endpoint}")
        reader.daemon = True
        reader.start()
        _LOG.info(
            "data channel to %s on port %d (%d slots of %d bytes)",
            self.endpoint,
            reply.port,
            self.slots,
            self.slot_bytes,
        )

    @staticmethod
    def _exactly(sock: socket.socket, into: memoryview) -> None:
        """Fill ``into`` from ``sock``; ``OSError`` at end of stream.
        ``MSG_WAITALL``: one wake-up per frame, not one per segment that
        arrived (a reader as fast as the sender would otherwise spin on
        small reads). A TLS socket takes no flags (it returns a record at
        a time)."""
        flags = 0 if isinstance(sock, ssl.SSLSocket) else socket.MSG_WAITALL
        got = 0
        while got < into.nbytes:
            n = sock.recv_into(into[got:], into.nbytes - got, flags)
            if n == 0:
                raise OSError("the engine closed the data channel")
            got += n

    def _read(self) -> None:
        """Reader thread: frames off the socket into their slots."""
        sock = self._sock
        assert sock is not None
        header = memoryview(bytearray(FRAME_HEADER.size))
        scratch = memoryview(bytearray(_SCRATCH))
        memory = memoryview(self._memory.data)
        try:
            while True:
                self._exactly(sock, header)
                cpu = time.thread_time()
                slot, _, ticket, size = FRAME_HEADER.unpack(header)
                if slot >= self.slots or size > self.slot_bytes:
                    raise OSError(f"frame header out of bounds: slot {slot}, {size} bytes")
                if self._table.holds(slot, ticket):
                    start = slot * self.slot_bytes
                    self._exactly(sock, memory[start : start + size])
                    with self._cond:
                        self._filled[slot] = (ticket, size)
                        self._cond.notify_all()
                    if self._on_cpu is not None:
                        self._on_cpu(time.thread_time() - cpu)
                else:  # a late frame of a slot handed out again: drop it
                    while size:
                        n = min(size, _SCRATCH)
                        self._exactly(sock, scratch[:n])
                        size -= n
        except OSError as exc:
            self._break(str(exc))

    # -- slots -----------------------------------------------------------

    def slots_message(self, ticket: int, slots: list[int]) -> pb.SharedSlots:
        return pb.SharedSlots(channel=self.token, ticket=ticket, slots=slots)

    def allocate(self, count: int) -> tuple[int, list[int]] | None:
        """A fresh ticket and ``count`` free slots, or None (broken, or too
        few free: the request goes inline)."""
        return None if self.broken is not None else self._table.take(count)

    def frame(self, slot: int, size: int, sample_id: int) -> Frame:
        """The frame of ``slot`` once the reader has it. ``FrameError`` or
        ``SharedMemoryError`` (both ``data_loss``) when it does not come or
        is not the sample's."""
        if not 0 <= slot < self.slots:
            raise FrameError(f"{self.endpoint}: slot {slot} is outside 0..{self.slots - 1}")
        ticket = self._table.ticket(slot)
        with self._cond:
            arrived = self._cond.wait_for(
                lambda: self.broken is not None or self._filled.get(slot, (None,))[0] == ticket,
                _FRAME_WAIT_S,
            )
            filled = self._filled.get(slot)
            if not arrived or filled is None or filled[0] != ticket:
                raise SharedMemoryError(
                    f"{self.endpoint}: the frame of slot {slot} did not arrive"
                    + (f" ({self.broken})" if self.broken else "")
                )
        if filled[1] != size:
            raise FrameError(f"{self.endpoint}: slot {slot} got {filled[1]} bytes, not {size}")
        start = slot * self.slot_bytes
        view = read_sample(self._memory, start, start + size)
        if view.sample_id != sample_id:
            raise FrameError(
                f"{self.endpoint}: slot {slot} holds sample {view.sample_id}, not {sample_id}"
            )
        return Frame(self._memory, view)

    def release(self, slots: Iterable[int]) -> None:
        """The client is done with these slots; they may be handed out again."""
        self._table.release(slots)

    # -- lifetime --------------------------------------------------------

    def _break(self, reason: str) -> None:
        with self._cond:
            if self.broken is not None:
                return
            self.broken = reason
            self._cond.notify_all()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        _LOG.info("data channel with %s off: %s", self.endpoint, reason)

    def close(self, reason: str = "closed by the client") -> None:
        """End the lease and the connection (idempotent)."""
        self._break(reason)
        if self._call is not None:
            with contextlib.suppress(Exception):
                self._call.cancel()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
