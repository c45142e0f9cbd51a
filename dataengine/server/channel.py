"""The engine's side of the TCP data channel: sample bytes on a plain socket.

gRPC spends several times a socket's CPU to deliver a multi-megabyte message
(HTTP/2 framing, slice buffers, a copy into a Python ``bytes``), on both
hosts. A client on another host may therefore open a data channel: it calls
``OpenDataChannel``, which answers the engine's data port and a 16-byte
token and stays open as the lease (like ``AttachSharedMemory``); the client
connects to the data port and sends ``b"MEDCHAN1" + token``; the engine
echoes the magic. From then on a request that names the channel
(``SharedSlots.channel``) gets each good sample as a frame on the socket
(``transport.FRAME_HEADER``: slot, ticket and size, then the serialized
``Sample``),
and the gRPC stream carries only its ``SharedRef``. Errors stay inline.

When the engine serves TLS the data port does too: the hello follows a
TLS handshake with the engine's current certificate (and, with a client
CA, the client's certificate checked), so the bytes are as protected as on
the gRPC port.

The socket is one-way after the hello and the engine writes each frame
whole under the channel's lock, so frames of concurrent streams never
interleave. A send that fails or times out breaks the channel: the sample
and the rest of the request go inline, the lease ends, and the client goes
back to plain gRPC for this engine.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from dataengine.errors import ConfigError
from dataengine.security.tls import ServerTLS
from dataengine.transport import CHANNEL_MAGIC, FRAME_HEADER, TOKEN_BYTES
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["ChannelTarget", "DataChannel", "DataChannels"]

_LOG = logging.getLogger(__name__)
_HELLO_TIMEOUT_S = 10.0
_SEND_TIMEOUT_S = 60.0
_CONNECT_WAIT_S = 30.0
_LEASE_POLL_S = 0.5
_SEND_BUFFER = 8 << 20
_HELLOS = 64  # connections in their hello (and TLS handshake) at once; more are closed


class DataChannel:
    """One client's connection. ``send`` is thread-safe."""

    def __init__(self, token: bytes) -> None:
        self.token = token
        self.connected = threading.Event()
        self.broken: str | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket) -> None:
        sock.settimeout(_SEND_TIMEOUT_S)
        self._sock = sock
        self.connected.set()

    def send(self, slot: int, ticket: int, data: bytes) -> bool:
        """Write one frame; False (and the channel broken) if it cannot be."""
        with self._lock:
            if self.broken is not None or self._sock is None:
                return False
            try:
                self._sock.sendall(FRAME_HEADER.pack(slot, 0, ticket, len(data)))
                self._sock.sendall(data)
            except OSError as exc:
                self._break(f"send failed: {exc}")
                return False
            return True

    def _break(self, reason: str) -> None:
        if self.broken is None:
            self.broken = reason
            _LOG.info("data channel closed: %s", reason)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()

    def close(self, reason: str) -> None:
        with self._lock:
            self._break(reason)


@dataclass(frozen=True)
class ChannelTarget:
    """A request's slots on a data channel: ``slots[i]`` for its i-th id."""

    channel: DataChannel
    ticket: int
    slots: list[int]

    def task_target(self, slot: int) -> None:
        """Workers return the sample's bytes; the front sends them."""
        return None

    def deliver(self, slot: int, data: bytes) -> int:
        """Send a good sample's bytes; their size, or 0 (then send inline)."""
        return len(data) if self.channel.send(slot, self.ticket, data) else 0

    def done(self, slot: int) -> None:
        """Nothing to mark: frames carry their ticket, and the client drops a
        frame whose ticket is not its slot's current one."""

    def done_when(self, future: object, slot: int) -> None:
        """As ``done``: nothing is written after the front stops sending."""


class DataChannels:
    """The data port, the channels by token, and ``OpenDataChannel``."""

    def __init__(self, host: str, port: int, tls: ServerTLS | None = None) -> None:
        self._host = host
        self._tls = tls
        self._want_port = port
        self.port = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._channels: dict[bytes, DataChannel] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._hellos = threading.BoundedSemaphore(_HELLOS)

    @property
    def count(self) -> int:
        """Channels connected now."""
        with self._lock:
            return sum(1 for c in self._channels.values() if c.connected.is_set())

    def start(self) -> DataChannels:
        """Bind the data port (``ConfigError`` if taken) and accept."""
        listener = socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self._host, self._want_port))
        except OSError as exc:
            listener.close()
            raise ConfigError(
                "server.data_port", f"cannot bind {self._host}:{self._want_port}: {exc.strerror}"
            ) from None
        listener.listen(64)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="data-accept", daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # closed by stop()
            if not self._hellos.acquire(blocking=False):
                # Connections that never finish their hello hold a thread for
                # up to 10 s each: beyond the bound, close at once.
                _LOG.debug("data port: %d hellos in progress, connection closed", _HELLOS)
                with contextlib.suppress(OSError):
                    sock.close()
                continue
            threading.Thread(target=self._hello, args=(sock,), daemon=True).start()

    def _hello(self, sock: socket.socket) -> None:
        """Read ``magic + token``; attach the socket to its channel or close it."""
        try:
            sock.settimeout(_HELLO_TIMEOUT_S)
            if self._tls is not None:  # the handshake, within the hello's timeout
                sock = self._tls.context().wrap_socket(sock, server_side=True)
            hello = b""
            while len(hello) < len(CHANNEL_MAGIC) + TOKEN_BYTES:
                chunk = sock.recv(len(CHANNEL_MAGIC) + TOKEN_BYTES - len(hello))
                if not chunk:
                    raise OSError("closed during the hello")
                hello += chunk
            magic, token = hello[: len(CHANNEL_MAGIC)], hello[len(CHANNEL_MAGIC) :]
            with self._lock:
                channel = next(
                    (c for t, c in self._channels.items() if hmac.compare_digest(t, token)), None
                )
            if magic != CHANNEL_MAGIC or channel is None or channel.connected.is_set():
                raise OSError("bad magic or unknown token")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
            sock.sendall(CHANNEL_MAGIC)
            channel.attach(sock)
        except OSError as exc:
            _LOG.warning("data channel hello refused: %s", exc)
            with contextlib.suppress(OSError):
                sock.close()
        finally:
            self._hellos.release()

    def target(self, shared: pb.SharedSlots, ids: int) -> ChannelTarget | None:
        """The request's ``ChannelTarget`` (None: the channel is not open here
        or broke: the request is served inline). ``ConfigError`` when the
        slots do not match the ids."""
        with self._lock:
            channel = self._channels.get(bytes(shared.channel))
        if channel is None or channel.broken is not None or not channel.connected.is_set():
            return None
        slots = list(shared.slots)
        if len(slots) != ids:
            raise ConfigError("shared.slots", f"{len(slots)} slots for {ids} sample ids")
        return ChannelTarget(channel, int(shared.ticket), slots)

    def Open(
        self, request: pb.DataChannelRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.DataChannelReply]:
        """Answer the data port and a token; hold the channel while the call
        is open (the lease). A client that does not connect within 30 s, a
        broken channel or the engine stopping ends it."""
        if self._listener is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this engine has no data port")
        token = secrets.token_bytes(TOKEN_BYTES)
        channel = DataChannel(token)
        ended = threading.Event()
        context.add_callback(ended.set)
        with self._lock:
            self._channels[token] = channel
        try:
            yield pb.DataChannelReply(port=self.port, token=token)
            deadline = time.monotonic() + _CONNECT_WAIT_S
            while not ended.wait(_LEASE_POLL_S) and not self._stopping.is_set():
                if channel.broken is not None:
                    return
                if not channel.connected.is_set() and time.monotonic() > deadline:
                    return
        finally:
            with self._lock:
                self._channels.pop(token, None)
            channel.close("the lease ended")

    def stop(self) -> None:
        """Close the data port and every channel; leases end."""
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() does not
            with contextlib.suppress(OSError):
                self._listener.close()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            channels = list(self._channels.values())
        for channel in channels:
            channel.close("the engine is stopping")
