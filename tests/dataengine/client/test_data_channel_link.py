"""The TCP data channel's two ends, in one process over loopback: the
engine's ``DataChannels`` (the real ``OpenDataChannel`` servicer on a real
gRPC server, the real data port) and the client's ``ChannelLink``.

What is proved: a frame arrives in its slot and reads back as the sample
sent; a late frame of a slot handed out again (an old ticket) is dropped,
never written over the new one; a frame header out of bounds, the socket
closing or the lease ending break the link (and ``frame`` says why instead
of waiting); a wrong token is refused at the hello; slots are handed out
again only once released.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import numpy as np
import pytest

from dataengine import tensors
from dataengine.client._channel import ChannelLink
from dataengine.errors import DataEngineError
from dataengine.server.channel import DataChannels
from dataengine.transport import CHANNEL_MAGIC, FRAME_HEADER
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

SERVICE = "dataengine.v1.DataEngine"


@pytest.fixture
def engine_side() -> Iterator[tuple[DataChannels, str]]:
    """A real gRPC server offering only ``OpenDataChannel``, and its data port."""
    channels = DataChannels("127.0.0.1", 0).start()
    server = grpc.server(futures.ThreadPoolExecutor(8))
    handler = grpc.unary_stream_rpc_method_handler(
        channels.Open,
        request_deserializer=pb.DataChannelRequest.FromString,
        response_serializer=pb.DataChannelReply.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"OpenDataChannel": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield channels, f"127.0.0.1:{port}"
    finally:
        channels.stop()
        server.stop(0).wait()


def _open(endpoint: str, slots: int = 4, slot_bytes: int = 8192) -> ChannelLink:
    stub = pb_grpc.DataEngineStub(grpc.insecure_channel(endpoint))
    return ChannelLink.open(endpoint, stub, slots, slot_bytes, timeout_s=10)


def _server_channel(channels: DataChannels, link: ChannelLink):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        target = channels.target(pb.SharedSlots(channel=link.token, ticket=1, slots=[0]), 1)
        if target is not None:
            return target.channel
        time.sleep(0.02)
    raise AssertionError("the engine never saw the channel connect")


def _frame(sid: int, value: float) -> bytes:
    return tensors.serialize_sample(sid, [("x", pb.FLOAT32, np.full(16, value, np.float32))])


def test_a_frame_lands_in_its_slot_and_reads_back(engine_side) -> None:
    channels, endpoint = engine_side
    link = _open(endpoint)
    try:
        ticket, slots = link.allocate(2)
        channel = _server_channel(channels, link)
        data = _frame(7, 1.5)
        assert channel.send(slots[1], ticket, data)
        frame = link.frame(slots[1], len(data), 7)
        (t,) = frame.view.tensors
        assert frame.view.sample_id == 7 and (t.array(frame.buffer) == 1.5).all()
        assert channels.count == 1
        # Both slots stay handed out until released; then they come back.
        assert link.allocate(3) is None
        link.release(slots)
        assert link.allocate(4) is not None
    finally:
        link.close()


def test_a_late_frame_of_an_old_ticket_is_dropped(engine_side) -> None:
    channels, endpoint = engine_side
    link = _open(endpoint, slots=1)
    try:
        old, (slot,) = link.allocate(1)
        link.release([slot])  # its call was cancelled before the frame came
        new, (again,) = link.allocate(1)
        assert again == slot and new != old
        channel = _server_channel(channels, link)
        assert channel.send(slot, old, _frame(1, 9.0))  # late: must not land
        fresh = _frame(2, 2.0)
        assert channel.send(slot, new, fresh)
        frame = link.frame(slot, len(fresh), 2)
        assert (frame.view.tensors[0].array(frame.buffer) == 2.0).all()
    finally:
        link.close()


def test_a_header_out_of_bounds_breaks_the_link_and_frame_says_so(engine_side) -> None:
    channels, endpoint = engine_side
    link = _open(endpoint, slots=2, slot_bytes=4096)
    try:
        ticket, slots = link.allocate(1)
        channel = _server_channel(channels, link)
        assert channel.send(slots[0], ticket, b"\0" * 5000)  # over the slot's 4096 bytes
        with pytest.raises(DataEngineError, match=r"did not arrive.*out of bounds"):
            link.frame(slots[0], 5000, 0)
        assert link.broken is not None and link.allocate(1) is None
    finally:
        link.close()


def test_the_engine_stopping_breaks_the_link(engine_side) -> None:
    channels, endpoint = engine_side
    link = _open(endpoint)
    try:
        _, slots = link.allocate(1)
        channels.stop()
        with pytest.raises(DataEngineError, match="did not arrive"):
            link.frame(slots[0], 10, 0)
        assert link.broken is not None
    finally:
        link.close()


def test_a_wrong_token_is_refused_at_the_hello(engine_side) -> None:
    channels, _ = engine_side
    sock = socket.create_connection(("127.0.0.1", channels.port), timeout=10)
    try:
        sock.sendall(CHANNEL_MAGIC + b"\x00" * 16)
        assert sock.recv(8) == b""  # closed without the answer
    finally:
        sock.close()
    assert FRAME_HEADER.size == 24
