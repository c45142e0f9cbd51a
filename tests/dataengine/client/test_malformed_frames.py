"""A frame whose declared sizes disagree with its bytes is a per-sample
``data_loss`` in a real ``EngineClient``, never a crash.

A real gRPC server on loopback stands in for an engine: it answers
``DescribeDataset`` and the health check with what a real engine (started
by ``start_module_engine``) answers, states its manifest fingerprint at the
start of each stream as the engine does, and serves ``StreamSamples`` with that
engine's own frames for the ids asked (fetched once through the raw
``StreamSamples`` callable, the bytes exactly as they came), except for
chosen ids, whose frame it corrupts: a data length field made larger than
its bytes, a shape that needs more bytes than it has, a frame cut short, an
unknown dtype. What is proved:

- the client yields every other sample, byte-identical to the real
  engine's frames, and reports each corrupted one in ``client.lost`` with
  kind ``data_loss`` and a message naming the problem and the endpoint;
  ``stats["malformed_frames"]`` counts them;
- a frame whose sample id cannot be read is not a crash either: the engine
  answered every id, so the one missing is lost (``data_loss``), without
  asking again (the same frame would come back) or blaming the engine.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from dataengine.client import EngineClient
from dataengine.frame import read_sample
from dataengine.shm import SHM_DIR
from dataengine.transport import FINGERPRINT_METADATA
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

SERVICE = "dataengine.v1.DataEngine"
STREAM = f"/{SERVICE}/StreamSamples"
BIG = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]
Corruption = Callable[[bytes], bytes]


# -- corruptions of a real frame ---------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def longer_data(frame: bytes) -> bytes:
    """The last tensor's data length field says one byte more than follows;
    the frame keeps its size."""
    last = read_sample(frame).tensors[-1]
    old, new = _varint(last.nbytes), _varint(last.nbytes + 1)
    assert len(old) == len(new) and frame[last.offset - len(old) : last.offset] == old
    return frame[: last.offset - len(old)] + new + frame[last.offset :]


def wider_shape(frame: bytes) -> bytes:
    """The first tensor's last dimension one larger than its bytes hold."""
    msg = pb.Sample.FromString(frame)
    msg.tensors[0].shape[-1] += 1
    return msg.SerializeToString()


def cut_short(frame: bytes) -> bytes:
    return frame[: len(frame) // 2]


def unknown_dtype(frame: bytes) -> bytes:
    msg = pb.Sample.FromString(frame)
    msg.tensors[1].dtype = 42  # type: ignore[assignment]
    return msg.SerializeToString()


def no_readable_id(frame: bytes) -> bytes:
    """The id field's varint runs past the frame: nothing can be attributed."""
    return b"\x08\x80"


def unasked_reference(frame: bytes) -> bytes:
    """A shared-memory reference in answer to a request over TCP."""
    sid = read_sample(frame).sample_id
    return pb.Sample(sample_id=sid, shared=pb.SharedRef(slot=1, size=10)).SerializeToString()


def reference_of_the_wrong_type(frame: bytes) -> bytes:
    """A shared-memory reference whose slot is a length-delimited field
    (``int("ab")`` in a reader that trusted the wire type)."""
    sid = _varint(read_sample(frame).sample_id)
    return b"\x08" + sid + b"\x22\x04\x0a\x02ab"


# -- the stand-in engine -----------------------------------------------------------


class Relay:
    """A real gRPC server on ``127.0.0.1:<port>`` serving a real engine's
    dataset, health and frames, with ``corrupt[id]`` applied to the frame of
    that id (only its first ``times[id]`` servings, when given)."""

    def __init__(
        self, engine: str, corrupt: dict[int, Corruption], times: dict[int, int] | None = None
    ) -> None:
        self._channel = grpc.insecure_channel(engine, options=BIG)
        self._stub = pb_grpc.DataEngineStub(self._channel)
        self._raw = self._channel.unary_stream(
            STREAM, request_serializer=pb.SampleRequest.SerializeToString
        )  # no response deserializer: each Sample as the bytes that arrived
        self._corrupt = corrupt
        self._times = dict(times or {})
        self._lock = threading.Lock()
        self._cache: dict[tuple[bytes, int, int, int], bytes] = {}
        self.served: list[tuple[int, bool]] = []  # (id, corrupted) in serving order
        self.info = self._stub.DescribeDataset(pb.DescribeDatasetRequest(), timeout=30)
        self.server = grpc.server(cf.ThreadPoolExecutor(max_workers=16), options=BIG)
        methods = {
            "DescribeDataset": grpc.unary_unary_rpc_method_handler(
                lambda request, context: self.info,
                request_deserializer=pb.DescribeDatasetRequest.FromString,
                response_serializer=pb.DatasetInfo.SerializeToString,
            ),
            "StreamSamples": grpc.unary_stream_rpc_method_handler(
                self._stream,
                request_deserializer=pb.SampleRequest.FromString,
                response_serializer=lambda frame: frame,  # identity: the bytes go as they are
            ),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, methods),)
        )
        self.health = health.HealthServicer()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def real_frame(self, request: pb.SampleRequest, sid: int) -> bytes:
        """The real engine's frame of ``sid`` for ``request``'s pipeline,
        seed and epoch (fetched once)."""
        key = (request.pipeline.SerializeToString(deterministic=True), request.seed, request.epoch)
        with self._lock:
            frame = self._cache.get((*key, sid))
        if frame is None:
            ask = pb.SampleRequest(
                dataset=request.dataset,
                pipeline=request.pipeline,
                seed=request.seed,
                epoch=request.epoch,
                sample_ids=[sid],
            )
            (frame,) = list(self._raw(ask, timeout=60))
            assert read_sample(frame).sample_id == sid
            with self._lock:
                self._cache[(*key, sid)] = frame
        return frame

    def _stream(self, request: pb.SampleRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        # As every engine does: the stream states its manifest fingerprint.
        context.send_initial_metadata(((FINGERPRINT_METADATA, self.info.fingerprint),))
        for sid in request.sample_ids:
            frame = self.real_frame(request, sid)
            with self._lock:
                bad = sid in self._corrupt and self._times.get(sid, 1) > 0
                if bad and sid in self._times:
                    self._times[sid] -= 1
                self.served.append((sid, bad))
            yield self._corrupt[sid](frame) if bad else frame

    def close(self) -> None:
        self.server.stop(grace=None).wait(10)
        self._channel.close()


@pytest.fixture(scope="module")
def real_engine(packed_dataset: Path, start_module_engine: Callable) -> str:
    return start_module_engine([packed_dataset]).address


@pytest.fixture
def relay(real_engine: str) -> Iterator[Callable[..., Relay]]:
    made: list[Relay] = []

    def _make(corrupt: dict[int, Corruption], times: dict[int, int] | None = None) -> Relay:
        made.append(Relay(real_engine, corrupt, times))
        return made[-1]

    yield _make
    for r in made:
        r.close()


def _row_bytes(batch: dict[str, torch.Tensor], name: str, row: int) -> bytes:
    return batch[name][row].reshape(-1).view(torch.uint8).numpy().tobytes()


def _epoch(client: EngineClient) -> dict[int, dict[str, bytes]]:
    """Each yielded sample's tensors as bytes, by id (batches released)."""
    got: dict[int, dict[str, bytes]] = {}
    for batch in client.batches(epochs=1):
        names = [n for n in batch if n != "sample_id"]
        for row, sid in enumerate(batch["sample_id"].tolist()):
            assert sid not in got
            got[sid] = {n: _row_bytes(batch, n, row) for n in names}
        batch.release()
    return got


def _assert_real(got: dict[int, dict[str, bytes]], relay: Relay, client: EngineClient) -> None:
    """Every yielded sample holds exactly the real engine's bytes."""
    request = pb.SampleRequest(
        dataset=client.dataset.name,
        pipeline=client.config.pipeline.to_proto(),
        seed=client.config.seed,
        epoch=0,
    )
    for sid, tensors in got.items():
        frame = relay.real_frame(request, sid)
        view = read_sample(frame)
        assert list(tensors) == [t.name for t in view.tensors]
        for t in view.tensors:
            assert tensors[t.name] == t.array(frame).tobytes(), (sid, t.name)


CORRUPT: dict[int, tuple[Corruption, str]] = {
    0: (wider_shape, r"bytes for shape \(.*\) of \w+ \(expected \d+\)"),  # sample 0: no id field
    3: (longer_data, r"tensor 4: field 4 declares \d+ bytes, \d+ are left in its message"),
    6: (cut_short, r"sample: field 2 declares \d+ bytes"),
    10: (unknown_dtype, r"unknown dtype code 42"),
}


def test_malformed_frames_are_lost_samples_and_the_rest_byte_identical(relay: Callable) -> None:
    stand_in = relay({sid: fn for sid, (fn, _) in CORRUPT.items()})
    with EngineClient(stand_in.address, batch_size=4, shared_memory=False) as client:
        n = client.num_samples
        got = _epoch(client)
        lost = {item.sample_id: item for item in client.lost}
        stats = client.stats.snapshot()
    assert n == 12
    assert sorted(got) == sorted(set(range(n)) - set(CORRUPT))
    _assert_real(got, stand_in, client)
    assert sorted(lost) == sorted(CORRUPT) and client.lost_count == len(CORRUPT)
    for sid, (_, problem) in CORRUPT.items():
        assert lost[sid].kind == "data_loss"
        assert lost[sid].message.startswith(f"malformed frame from {stand_in.address}: ")
        assert re.search(problem, lost[sid].message), (sid, lost[sid].message)
    assert stats["malformed_frames"] == len(CORRUPT)
    assert stats["failovers"] == 0 and stats["engines_lost"] == 0  # a bad sample, not a bad engine
    assert sorted(sid for sid, bad in stand_in.served if bad) == sorted(CORRUPT)


def test_a_frame_without_a_readable_id_is_that_sample_lost_not_a_failover_loop(
    relay: Callable,
) -> None:
    """The engine answered every id, one with a frame whose id cannot be
    read: that id is lost (data_loss), since asking again would get the same
    frame; the engine is not blamed and nothing is asked twice."""
    stand_in = relay({4: no_readable_id}, times={4: 1})
    with EngineClient(
        stand_in.address, batch_size=4, shared_memory=False, health_interval_s=0.2
    ) as client:
        got = _epoch(client)
        stats = client.stats.snapshot()
        lost = list(client.lost)
    assert sorted(got) == [i for i in range(12) if i != 4]
    assert [(x.sample_id, x.kind) for x in lost] == [(4, "data_loss")]
    assert "unreadable frame" in lost[0].message and stand_in.address in lost[0].message
    _assert_real(got, stand_in, client)
    assert stats["malformed_frames"] == 1
    assert stats["failovers"] == 0 and stats["engines_lost"] == 0
    assert [bad for sid, bad in stand_in.served if sid == 4] == [True]


def test_an_unasked_shared_memory_reference_is_not_a_crash(relay: Callable) -> None:
    """A reference to a slot the client never gave (the request went over
    TCP) cannot be read; the epoch still ends, and the sample either arrives
    with the real bytes when asked again or is a ``data_loss``."""
    odd = {5: reference_of_the_wrong_type, 8: unasked_reference}
    stand_in = relay(odd, times=dict.fromkeys(odd, 1))
    with EngineClient(
        stand_in.address, batch_size=4, shared_memory=False, health_interval_s=0.2
    ) as client:
        got = _epoch(client)
        lost = {item.sample_id: item for item in client.lost}
        stats = client.stats.snapshot()
    assert sorted([*got, *lost]) == list(range(12))
    _assert_real(got, stand_in, client)
    assert set(lost) <= set(odd) and all(item.kind == "data_loss" for item in lost.values())
    failures = stats["malformed_frames"] + stats["shared_memory_failures"]  # type: ignore[operator]
    assert failures == len(odd)


def test_the_stand_in_serves_the_real_engines_bytes(relay: Callable, real_engine: str) -> None:
    """Control: with nothing corrupted the stand-in's epoch is the real
    engine's, sample for sample (so the tests above compare real frames).
    The stand-in has no ``AttachSharedMemory``: a client that would share
    memory stays on TCP and leaves no segment behind."""
    stand_in = relay({})
    with EngineClient(stand_in.address, batch_size=5, shared_memory=True) as client:
        via_relay = _epoch(client)
        stats = client.stats.snapshot()
        assert client.lost_count == 0 and stats["malformed_frames"] == 0
        assert set(stats["receive"]) == {"tcp"}  # type: ignore[arg-type]
    assert not [p for p in SHM_DIR.glob(f"medstream-*-{os.getpid()}-*")]
    with EngineClient(real_engine, batch_size=5, shared_memory=False) as client:
        direct = _epoch(client)
    assert sorted(via_relay) == list(range(12))
    assert via_relay == direct
    assert all(np.frombuffer(b, np.uint8).size for t in direct.values() for b in t.values())
