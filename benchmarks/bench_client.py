"""What the trainer host pays to receive a sample (issue 10).

``python -m benchmarks client [--quick] [--cores 2] [--out bench-output]``

Sample: 16x224x224 volume, 12x4096 ECG window at 500 Hz, 512 byte tokens,
flip and a random ECG window (``bench_cold.SPEC``), float32 and bfloat16 on
the wire. Corpus: ``bench_cold``'s (generated, packed and cached under
``--out``; the lean peer's .npz files with it). Everything runs on the same
``--cores`` cores (the whole process tree is pinned to them): the engine
with 2 decode workers, the client, the DataLoader with 2 workers, the wire
server. Measured, one after the other in one run:

A. the lean local peer (``bench_cold.NpzStudyDataset``): a DataLoader with 2
   persistent workers reading one .npz of prepared arrays per study and
   augmenting it; one warm-up epoch, then CPU per sample of the whole
   process tree (main + workers) over the measured epochs;
B. the client over TCP against a warm engine (a warm-up epoch first, so L0
   holds every prefix; then several epochs), two ways: ``tcp``, the samples
   inside the gRPC messages (``shared_memory=False, data_channel=False``:
   what a client on another host gets from an engine without a data
   channel), and ``data_channel``, the samples on the TCP data channel
   (``shared_memory=False``: what a client on another host gets by
   default). CPU of the client process alone (the engine is another
   process) per sample, each batch released after use as a trainer would;
   next to it, the client's own receive figures
   (``client.stats.snapshot()["receive"]``: CPU seconds and bytes per
   sample, by transport). Target <= 0.2x (A);
C. the same with ``shared_memory=True`` against the same engine (same
   host). NOT MEASURED unless the engine's GetStats
   ``transports["shared_memory"]`` grew during the measured epochs (a
   warning when it grew by fewer than the samples). Target <= 0.1x (A);
D. one stream over loopback, in GB/s (10^9 bytes per second):
   - raw TCP: ``sendall`` of a served sample's bytes from another process,
     ``recv_into`` one preallocated buffer here;
   - gRPC wire alone: the same bytes (``wire.encode_sample`` of real
     arrays) streamed from the same process by a small server with the
     engine's ``GRPC_OPTIONS`` and the identity serializer, read with the
     real client's channel options, no response deserializer (the bytes as
     received) and its frame reader (``dataengine.frame.read_sample`` and a
     numpy view per tensor). Target >= 1.5 GB/s and >= 0.4x raw;
   - the real engine: warm L0, a large batch, data channel, float32; its
     augmentation runs on the same cores, so this is the fleet's figure
     (engine-bound), shown against the same targets;
E. shared memory against ``np.copyto`` of the same float32 frame into a
   preallocated buffer: a writer process serializes the sample into a slot
   of a real ``dataengine.shm.Segment`` as an engine worker does
   (``wire.sample_parts``, ``tensors.write_parts``), and this process
   handles it as the client does (``Segment.check``, ``read_sample`` in
   place, a byte copy per tensor into a preallocated batch row); slot
   numbers travel over a pipe, not the gRPC stream (D measures that).
   Target >= 0.8x memcpy; the client side alone (frame already in the
   slot) is reported too.

CPU is user + system. Ratios come from this one run, each with its target
and ``ok``/``MISSED``; a part that could not run prints ``n/a`` and why.
The figures are also written as JSON under ``--out``/client/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing
import os
import shlex
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmarks._support import Engine, engine_stats
from benchmarks.bench_cold import (
    FULL_CORPUS,
    SPEC,
    WORKERS,
    ColdCorpus,
    NpzStudyDataset,
    _engine_tree_cpu,
    _sources,
    cold_corpus,
    pin_cores,
    wire_spec,
)
from benchmarks.bench_vs_dataloader import _tree_cpu_seconds
from dataengine.client import EngineClient
from dataengine.client._fleet import CHANNEL_OPTIONS
from dataengine.frame import read_sample
from dataengine.pipeline.augment import augment
from dataengine.pipeline.spec import PipelineSpec
from dataengine.pipeline.wire import encode_sample, sample_parts
from dataengine.server.app import GRPC_OPTIONS
from dataengine.shm import NAME_RE, SHM_DIR, Segment
from dataengine.tensors import write_parts
from dataengine.v1 import dataengine_pb2 as pb

QUICK_CORPUS = ColdCorpus(16, 16, 256, shard_samples=4)
DTYPES = ("float32", "bfloat16")
TRANSPORTS = ("tcp", "data_channel", "shared_memory")
LETTER = {"tcp": "B", "data_channel": "B", "shared_memory": "C"}
WIRE_METHOD = "/benchclient.Wire/Stream"
TARGETS = {  # name: (limit, at_most)
    "B tcp": (0.2, True),
    "B data_channel": (0.2, True),
    "C shared_memory": (0.1, True),
    "D GB/s": (1.5, False),
    "D vs raw": (0.4, False),
    "E vs memcpy": (0.8, False),
}


@dataclass(frozen=True)
class Plan:
    """How much each part runs: epochs after one warm-up epoch, repeats of
    each loopback and memcpy measurement, bytes per repeat."""

    batch_size: int
    large_batch: int
    peer_epochs: int
    client_epochs: int
    engine_epochs: int
    repeats: int
    stream_bytes: int


FULL_PLAN = Plan(8, 24, 8, 10, 4, 5, 2 << 30)
QUICK_PLAN = Plan(8, 16, 3, 4, 2, 3, 1 << 30)


# -- A: the lean local peer --------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """``samples`` in ``seconds`` of wall time using ``cpu_s`` CPU seconds
    (user + system) of the processes measured."""

    samples: int
    seconds: float
    cpu_s: float

    @property
    def cpu_ms(self) -> float:
        """CPU milliseconds per sample."""
        return 1e3 * self.cpu_s / self.samples

    @property
    def rate(self) -> float:
        """Samples per second."""
        return self.samples / self.seconds


def _count(batch: dict[str, torch.Tensor]) -> int:
    return len(batch["sample_id"] if "sample_id" in batch else batch["tokens"])


def peer_epochs(folder: Path, spec: PipelineSpec, batch: int, epochs: int) -> Measured:
    """A DataLoader with ``WORKERS`` persistent workers over the lean peer's
    .npz files: one warm-up epoch (worker start-up, page cache), then
    ``epochs`` measured; CPU of this process and its workers. Must run with
    no other child process alive (they would be counted)."""
    loader = DataLoader(
        NpzStudyDataset(folder, spec, seed=0),
        batch_size=batch,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        num_workers=WORKERS,
        persistent_workers=True,  # alive at the end, so their CPU is counted
        prefetch_factor=4,
    )
    for b in loader:
        _count(b)
    t0, cpu0, n = time.perf_counter(), _tree_cpu_seconds(), 0
    for _ in range(epochs):
        n += sum(_count(b) for b in loader)
    measured = Measured(n, time.perf_counter() - t0, _tree_cpu_seconds() - cpu0)
    del loader  # ends its workers
    return measured


# -- B, C: the client against a warm engine ---------------------------------


@dataclass(frozen=True)
class ClientRun:
    """Measured epochs of one client configuration against one engine.

    ``client`` is this process's CPU (the client: its batch, call and gRPC
    threads and the loop consuming batches); ``engine_cpu_s`` the engine's
    process tree; ``wire_bytes`` the engine's ``bytes_served`` delta;
    ``transports`` and ``sources`` GetStats deltas (samples by transport, by
    where their prefix came from); ``receive`` the client's own receive
    stats delta by transport (``samples``, ``bytes``, ``cpu_s``); ``measured``
    False when the run did not take the path it is meant to measure
    (``note`` says why)."""

    transport: str
    dtype: str
    batch_size: int
    client: Measured
    engine_cpu_s: float
    wire_bytes: int
    transports: dict[str, int]
    sources: dict[str, int]
    receive: dict[str, dict[str, float]]
    measured: bool
    note: str = ""

    @property
    def gbps(self) -> float:
        """Wire bytes delivered per second, 10^9 bytes."""
        return self.wire_bytes / self.client.seconds / 1e9


def _release(batch: dict[str, torch.Tensor]) -> None:
    release = getattr(batch, "release", None)
    if release is not None:
        release()


def _receive(client: EngineClient) -> dict[str, dict[str, float]]:
    """The client's receive stats by transport ({} when it has none)."""
    snap = client.stats.snapshot().get("receive")
    if not isinstance(snap, dict):
        return {}
    return {str(k): {f: float(x) for f, x in v.items()} for k, v in snap.items()}


def _minus(
    after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    return {
        k: {f: x - before.get(k, {}).get(f, 0.0) for f, x in v.items()} for k, v in after.items()
    }


def _transports(stats: pb.EngineStats) -> dict[str, int]:
    return {str(k): int(v) for k, v in stats.transports.items()}


def client_run(
    engine: Engine, spec: PipelineSpec, dtype: str, transport: str, batch: int, epochs: int
) -> ClientRun:
    """One warm-up epoch, then ``epochs`` measured epochs of a fresh client
    (``shared_memory`` as ``transport`` says) in this process; each batch is
    released after use."""
    client = EngineClient(
        engine.address,
        pipeline=spec,
        batch_size=batch,
        seed=0,
        shared_memory=transport == "shared_memory",
        data_channel=transport == "data_channel",
    )
    with client:
        for b in client.batches(epochs=1):
            _release(b)
        before, rec0 = engine_stats(engine.address), _receive(client)
        e0 = _engine_tree_cpu(engine.proc.pid)
        t0, c0, n = time.perf_counter(), time.process_time(), 0
        for b in client.batches(epochs=epochs):
            n += _count(b)
            _release(b)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        engine_cpu = _engine_tree_cpu(engine.proc.pid) - e0
        after, rec1 = engine_stats(engine.address), _receive(client)
    ways0, ways1 = _transports(before), _transports(after)
    ways = {k: v - ways0.get(k, 0) for k, v in ways1.items()}
    src0, src1 = _sources(before), _sources(after)
    took, note = ways.get(transport, 0), ""
    if took == 0:
        note = f"no sample went by {transport} (engine transports: {ways})"
    elif took < n:
        note = f"only {took} of {n} samples went by {transport} ({ways})"
    return ClientRun(
        transport=transport,
        dtype=dtype,
        batch_size=batch,
        client=Measured(n, seconds, cpu),
        engine_cpu_s=engine_cpu,
        wire_bytes=after.bytes_served - before.bytes_served,
        transports=ways,
        sources={k: src1[k] - src0[k] for k in src1},
        receive=_minus(rec1, rec0),
        measured=took > 0,
        note=note,
    )


# -- D: one stream over loopback ---------------------------------------------


def _identity(data: bytes) -> bytes:
    return data


def read_frame(frame: bytes) -> list[np.ndarray]:
    """What the real client does first with a received frame: find its
    tensors in place (``read_sample``) and view each (no copy)."""
    return [t.array(frame) for t in read_sample(frame).tensors]


def _serve_wire(payloads: dict[str, bytes], conn: Connection) -> None:
    """The loopback senders (in a spawned process): a raw TCP listener and a
    gRPC server streaming ``payloads[key]`` ``count`` times per request.
    Sends ``(raw port, grpc port)`` on ``conn``; stops when ``conn`` gets a
    message or closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        key, count = json.loads(request)
        frame = payloads[key]
        for _ in range(count):
            yield frame

    handler = grpc.method_handlers_generic_handler(
        WIRE_METHOD.split("/")[1],
        {
            "Stream": grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=_identity, response_serializer=_identity
            )
        },
    )
    server = grpc.server(ThreadPoolExecutor(4), options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    def raw() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            with sock:
                head = b""
                while not head.endswith(b"\n"):
                    head += sock.recv(256)
                key, count = json.loads(head)
                view = memoryview(payloads[key])
                for _ in range(count):
                    sock.sendall(view)

    threading.Thread(target=raw, daemon=True).start()
    conn.send((listener.getsockname()[1], port))
    with contextlib.suppress(EOFError):
        conn.recv()
    listener.close()
    server.stop(1).wait()


def raw_stream(port: int, key: str, size: int, count: int) -> float:
    """Seconds to receive ``count`` frames of ``size`` bytes over one raw
    loopback socket, each into the same preallocated buffer."""
    buf = bytearray(size)
    view = memoryview(buf)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        t0 = time.perf_counter()
        sock.sendall(json.dumps([key, count]).encode() + b"\n")
        for _ in range(count):
            got = 0
            while got < size:
                n = sock.recv_into(view[got:])
                if not n:
                    raise ConnectionError(f"raw sender closed after {got} of {size} bytes")
                got += n
        return time.perf_counter() - t0


def grpc_stream(channel: grpc.Channel, key: str, size: int, count: int) -> float:
    """Seconds to receive ``count`` frames of ``size`` bytes over one gRPC
    stream, each handed to the real client's frame reader."""
    # No response deserializer: each frame arrives as the bytes received,
    # as in the real client (``_fleet._Engine.frames``).
    call = channel.unary_stream(WIRE_METHOD, request_serializer=_identity)
    t0 = time.perf_counter()
    got = 0
    for frame in call(json.dumps([key, count]).encode(), timeout=600):
        read_frame(frame)
        got += len(frame)
    seconds = time.perf_counter() - t0
    if got != size * count:
        raise RuntimeError(f"gRPC stream delivered {got} bytes, expected {size * count}")
    return seconds


@dataclass(frozen=True)
class Loopback:
    """One payload over loopback: its size (bytes), the frames per repeat,
    and the GB/s (10^9 bytes per second) of each repeat, raw and gRPC."""

    dtype: str
    frame_bytes: int
    frames: int
    raw_gbps: list[float]
    grpc_gbps: list[float]

    @property
    def raw(self) -> float:
        return statistics.median(self.raw_gbps)

    @property
    def grpc(self) -> float:
        return statistics.median(self.grpc_gbps)


def loopback(payloads: dict[str, bytes], plan: Plan) -> list[Loopback]:
    """Raw socket and gRPC wire, alternating, ``plan.repeats`` times per
    payload, against senders in a spawned process."""
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    proc = ctx.Process(target=_serve_wire, args=(payloads, there), daemon=True)
    proc.start()
    there.close()
    out = []
    try:
        if not here.poll(120):
            raise RuntimeError("the wire server did not start in 120 s")
        raw_port, grpc_port = here.recv()
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=CHANNEL_OPTIONS) as ch:
            for key, payload in payloads.items():
                size = len(payload)
                frames = max(8, plan.stream_bytes // size)
                grpc_stream(ch, key, size, 4)  # connect and warm up
                raw_stream(raw_port, key, size, 4)
                raws, grpcs = [], []
                for _ in range(plan.repeats):
                    raws.append(size * frames / raw_stream(raw_port, key, size, frames) / 1e9)
                    grpcs.append(size * frames / grpc_stream(ch, key, size, frames) / 1e9)
                out.append(Loopback(key, size, frames, raws, grpcs))
    finally:
        with contextlib.suppress(OSError):
            here.send("stop")
        here.close()
        proc.join(15)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return out


def served_arrays(folder: Path, spec: PipelineSpec) -> dict[str, np.ndarray]:
    """One served sample's arrays: the first lean study, augmented as the
    engine augments it (float32; the wire dtype is applied on encoding)."""
    first = sorted(folder.glob("*.npz"))[0]
    with np.load(first) as z:
        prefix = {k: z[k] for k in z.files}
    return augment(prefix, spec, 0, 0, 0)


def sample_payloads(arrays: dict[str, np.ndarray], spec: PipelineSpec) -> dict[str, bytes]:
    """The served sample's bytes per wire dtype, encoded as the engine
    encodes it (``wire.encode_sample``)."""
    out = {}
    for dtype in DTYPES:
        wired = wire_spec(spec, dtype)
        if wired is not None:
            out[dtype] = encode_sample(1, arrays, wired)
    return out


# -- E: shared memory against memcpy -----------------------------------------


def memcpy_gbps(size: int, repeats: int, total: int) -> list[float]:
    """GB/s of ``np.copyto`` of one ``size``-byte frame into a preallocated
    buffer, ``total // size`` times per repeat."""
    src = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    dst = np.empty_like(src)
    count = max(8, total // size)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(count):
            np.copyto(dst, src)
        out.append(size * count / (time.perf_counter() - t0) / 1e9)
    return out


SHM_SLOTS = 4  # slots in flight between the writer and the reader


def _shm_writer(
    name: str,
    nonce: bytes,
    arrays: dict[str, np.ndarray],
    spec: PipelineSpec,
    count: int,
    conn: Connection,
) -> None:
    """The engine side of part E (in a spawned process): attach segment
    ``name``; ``count`` times take a free slot from ``conn``, serialize the
    sample straight into it as an engine worker does
    (``wire.sample_parts`` once, ``tensors.write_parts`` per slot) and send
    back ``(slot, size)``, as the engine's front streams a SharedRef."""
    parts = sample_parts(1, arrays, spec)
    segment = Segment.open(name, nonce)
    try:
        with memoryview(segment.buffer) as whole:
            for _ in range(count):
                slot = conn.recv()
                start, stop = segment.slot_range(slot)
                with whole[start:stop] as target:
                    size = write_parts(parts, target)
                conn.send((slot, size))
    finally:
        segment.close()


def _read_slot(segment: Segment, slot: int, size: int, rows: list[np.ndarray]) -> None:
    """The client's side of one shared-memory frame, as the client does it:
    check the segment is still whole, read the Sample in place in ``slot``
    and byte-copy each tensor into its preallocated batch row."""
    start, _ = segment.slot_range(slot)
    segment.check(start + size)
    view = read_sample(segment.buffer, start, start + size)
    for t, row in zip(view.tensors, rows, strict=True):
        row[:] = np.frombuffer(segment.buffer, dtype=np.uint8, count=t.nbytes, offset=t.offset)


def _batch_rows(payload: bytes) -> list[np.ndarray]:
    return [np.empty(t.nbytes, dtype=np.uint8) for t in read_sample(payload).tensors]


def shm_read_gbps(payload: bytes, repeats: int, total: int) -> list[float]:
    """GB/s of the client's side of the shared-memory path alone: a frame
    already in a slot of a real ``Segment``, read and copied into a batch
    row (``_read_slot``), repeated."""
    count = max(8, total // len(payload))
    rows = _batch_rows(payload)
    segment = Segment.create(1, len(payload))
    try:
        start, _ = segment.slot_range(0)
        segment.buffer[start : start + len(payload)] = payload
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(count):
                _read_slot(segment, 0, len(payload), rows)
            out.append(len(payload) * count / (time.perf_counter() - t0) / 1e9)
    finally:
        segment.unlink()
        segment.close()
    return out


def shm_gbps(
    arrays: dict[str, np.ndarray], spec: PipelineSpec, repeats: int, total: int
) -> list[float]:
    """GB/s of the shared-memory transport moving the sample of ``arrays``
    (``spec``'s wire dtypes). A writer process
    (``_shm_writer``) serializes it into a slot of a real
    ``dataengine.shm.Segment``; this process reads it there and copies it
    into a batch row (``_read_slot``), then frees the slot. Slot numbers
    travel over a pipe instead of the gRPC stream (whose cost part D
    measures); ``SHM_SLOTS`` are in flight. GB/s is frame bytes delivered
    into the batch row per second of wall time."""
    payload = encode_sample(1, arrays, spec)
    count = max(8, total // len(payload))
    rows = _batch_rows(payload)
    segment = Segment.create(SHM_SLOTS, len(payload))
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    # One writer for every repeat; the first ``count`` frames are the warm-up
    # (its start-up, first touches of the slots) and are not timed.
    proc = ctx.Process(
        target=_shm_writer,
        args=(segment.name, segment.nonce, arrays, spec, count * (repeats + 1), there),
        daemon=True,
    )
    out = []
    try:
        proc.start()
        there.close()
        for slot in range(SHM_SLOTS):
            here.send(slot)
        left = count * (repeats + 1)
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            for _ in range(count):
                slot, size = here.recv()
                _read_slot(segment, slot, size, rows)
                left -= 1
                if left >= SHM_SLOTS:
                    here.send(slot)
            out.append(len(payload) * count / (time.perf_counter() - t0) / 1e9)
        proc.join(30)
    finally:
        here.close()
        if proc.is_alive():
            proc.kill()
            proc.join()
        segment.unlink()
        segment.close()
    return out[1:]


# -- the run -----------------------------------------------------------------


@dataclass
class Results:
    """Every figure of one run; None where a part could not run (``why``)."""

    command: str
    cores: list[int]
    cpu_count: int
    corpus: str
    plan: dict[str, int]
    peer: Measured | None = None
    clients: list[ClientRun] = field(default_factory=list)
    engine_stream: ClientRun | None = None
    loopback: list[Loopback] = field(default_factory=list)
    memcpy_gbps: list[float] = field(default_factory=list)
    shm_gbps: list[float] = field(default_factory=list)
    shm_read_gbps: list[float] = field(default_factory=list)
    leftover_segments: list[str] = field(default_factory=list)
    why: dict[str, str] = field(default_factory=dict)

    def client(self, transport: str, dtype: str) -> ClientRun | None:
        for c in self.clients:
            if c.transport == transport and c.dtype == dtype:
                return c
        return None


@contextlib.contextmanager
def _part(results: Results, part: str) -> Iterator[None]:
    """Run one part; a failure is recorded as its reason (the run goes on)."""
    print(f"-- {part}", flush=True)
    try:
        yield
    except Exception as exc:
        lines = str(exc).strip().splitlines() or [""]
        results.why[part] = f"{type(exc).__name__}: {lines[-1][:300]}"
        print(f"   {part} could not run: {results.why[part]}", flush=True)


def run(r: Results, lean: Path, dataset: Path, spec: PipelineSpec, plan: Plan) -> None:
    with _part(r, "A"):  # first: no other child process may be alive
        r.peer = peer_epochs(lean, spec, plan.batch_size, plan.peer_epochs)
    with _part(r, "engine"):
        engine = Engine(dataset, workers=WORKERS)
        try:
            for transport in TRANSPORTS:
                for dtype in DTYPES:
                    part = f"{LETTER[transport]} {transport} {dtype}"
                    with _part(r, part):
                        wired = wire_spec(spec, dtype)
                        if wired is None:
                            raise RuntimeError("PipelineSpec has no wire dtypes")
                        run_ = client_run(
                            engine, wired, dtype, transport, plan.batch_size, plan.client_epochs
                        )
                        r.clients.append(run_)
                        if not run_.measured:
                            print(f"   !!! {part} NOT MEASURED: {run_.note}", flush=True)
                        elif run_.note:
                            print(f"   WARNING ({part}): {run_.note}", flush=True)
            with _part(r, "D engine"):
                r.engine_stream = client_run(
                    engine, spec, "float32", "data_channel", plan.large_batch, plan.engine_epochs
                )
        finally:
            engine.stop()
    arrays: dict[str, np.ndarray] = {}
    payloads: dict[str, bytes] = {}
    with _part(r, "D wire"):
        arrays = served_arrays(lean, spec)
        payloads = sample_payloads(arrays, spec)
        r.loopback = loopback(payloads, plan)
    with _part(r, "E"):
        if not payloads:
            raise RuntimeError("no served sample to move (see D wire)")
        frame = payloads["float32"]
        r.memcpy_gbps = memcpy_gbps(len(frame), plan.repeats, plan.stream_bytes)
        r.shm_read_gbps = shm_read_gbps(frame, plan.repeats, plan.stream_bytes)
        r.shm_gbps = shm_gbps(arrays, spec, plan.repeats, plan.stream_bytes)
    r.leftover_segments = leftover_segments()


def leftover_segments() -> list[str]:
    """Shared-memory segments made by this process whose names are still in
    /dev/shm after every client, engine and part E closed (expected: none)."""
    try:
        names = [path.name for path in SHM_DIR.iterdir()]
    except OSError:
        return []
    return [n for n in names if (m := NAME_RE.match(n)) and int(m.group(2)) == os.getpid()]


# -- the report --------------------------------------------------------------


def _mark(value: float, name: str) -> str:
    limit, at_most = TARGETS[name]
    return "ok" if (value <= limit if at_most else value >= limit) else "MISSED"


def _receive_cells(c: ClientRun) -> str:
    """The client's own receive figures per transport: CPU ms and KB per
    sample."""
    cells = []
    for way, f in sorted(c.receive.items()):
        n = f.get("samples", 0.0)
        if n:
            ms, kb = 1e3 * f.get("cpu_s", 0.0) / n, f.get("bytes", 0.0) / n / 1e3
            cells.append(f"{way} {ms:.2f} ms {kb:.0f} KB")
    return ", ".join(cells) or "-"


def _client_lines(r: Results) -> list[str]:
    """Rows A, B and C of the table."""
    lines = [
        f"{'':<38}{'samples':>8}{'wall s':>8}{'samples/s':>10}{'CPU ms/sample':>14}"
        f"{'served KB/smp':>15}{'engine ms/sample':>17}   client receive stats per sample",
    ]
    label = "A DataLoader .npz, 2 workers (tree)"
    if r.peer is None:
        lines.append(f"{label:<38}{'n/a':>8}   {r.why.get('A')}")
    else:
        p = r.peer
        lines.append(f"{label:<38}{p.samples:>8}{p.seconds:>8.2f}{p.rate:>10.1f}{p.cpu_ms:>14.2f}")
    for transport in TRANSPORTS:
        letter = LETTER[transport]
        for dtype in DTYPES:
            label = f"{letter} client {transport} {dtype}"
            c = r.client(transport, dtype)
            if c is None:
                why = r.why.get(f"{letter} {transport} {dtype}", r.why.get("engine", ""))
                lines.append(f"{label:<38}{'n/a':>8}   {why}")
                continue
            m = c.client
            lines.append(
                f"{label:<38}{m.samples:>8}{m.seconds:>8.2f}{m.rate:>10.1f}{m.cpu_ms:>14.2f}"
                f"{c.wire_bytes / m.samples / 1e3:>15.1f}{1e3 * c.engine_cpu_s / m.samples:>17.2f}"
                f"   {_receive_cells(c)}"
            )
            if not c.measured:
                lines.append(f"{'':<4}!!! NOT MEASURED: {c.note}")
            elif c.note:
                lines.append(f"{'':<4}WARNING: {c.note}")
            lines.append(
                f"{'':<4}engine transports {c.transports or '-'}; served from "
                f"{', '.join(f'{k} {v}' for k, v in c.sources.items() if v) or '-'}"
            )
    return lines


def _transport_lines(r: Results) -> list[str]:
    """Parts D and E."""
    lines = [""]
    es = r.engine_stream
    if es is None:
        why = r.why.get("D engine", r.why.get("engine", ""))
        lines.append(f"D engine, one client, data channel float32: n/a   {why}")
    else:
        lines.append(
            f"D engine, one client, data channel float32, batch {es.batch_size}: "
            f"{es.gbps:.2f} GB/s "
            f"({es.client.rate:.0f} samples/s, engine CPU "
            f"{1e3 * es.engine_cpu_s / es.client.samples:.2f} ms/sample, client CPU "
            f"{es.client.cpu_ms:.2f} ms/sample)"
        )
    if r.loopback:
        lines.append(
            "D loopback, one stream (gRPC frames read with read_sample and a view per tensor):"
        )
        for lb in r.loopback:
            lines.append(
                f"{'':<4}{lb.dtype:<9} frame {lb.frame_bytes / 1e6:.2f} MB x {lb.frames}: raw "
                f"socket {lb.raw:.2f} GB/s, gRPC wire {lb.grpc:.2f} GB/s (medians of "
                f"{len(lb.raw_gbps)}; raw {min(lb.raw_gbps):.2f}-{max(lb.raw_gbps):.2f}, gRPC "
                f"{min(lb.grpc_gbps):.2f}-{max(lb.grpc_gbps):.2f})"
            )
    else:
        lines.append(f"D loopback: n/a   {r.why.get('D wire', '')}")
    memcpy, shm = _median(r.memcpy_gbps), _median(r.shm_gbps)
    lines.append(
        f"E memcpy (np.copyto) {memcpy:.2f} GB/s" if memcpy else f"E memcpy: n/a {r.why.get('E')}"
    )
    lines.append(
        f"E shared-memory transport (writer process + client side) {shm:.2f} GB/s"
        if shm
        else f"E shared-memory transport: n/a   {r.why.get('E', '')}"
    )
    reader = _median(r.shm_read_gbps)
    if reader:
        lines.append(
            f"E   client side alone (read in place + copy into the batch) {reader:.2f} GB/s"
        )
    return lines


def _median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def _ratio_lines(r: Results) -> list[str]:
    """Every target ratio of this run, with ``ok``/``MISSED`` or ``n/a``."""
    lines = ["", "ratios from this run (target):"]

    def ratio(label: str, value: float | None, target: str, name: str, why: str = "") -> None:
        if value is None:
            lines.append(f"  {label:<52}{'n/a':>9}   {target:<10}{why}")
        else:
            lines.append(f"  {label:<52}{value:>9.3f}   {target:<10}{_mark(value, name)}")

    for transport, name, target in (
        ("tcp", "B tcp", "<= 0.2x"),
        ("data_channel", "B data_channel", "<= 0.2x"),
        ("shared_memory", "C shared_memory", "<= 0.1x"),
    ):
        letter = name[0]
        for dtype in DTYPES:
            c = r.client(transport, dtype)
            why = (
                r.why.get(f"{letter} {transport} {dtype}")
                or r.why.get("engine")
                or r.why.get("A")
                or ""
            )
            value = None
            if c is not None and not c.measured:
                why = f"NOT MEASURED ({c.note})"
            elif c is not None and r.peer is not None:
                value = c.client.cpu_ms / r.peer.cpu_ms
            ratio(f"{letter} client CPU/sample {transport} {dtype} / A", value, target, name, why)
    es = r.engine_stream
    if es is None:
        why = r.why.get("D engine", r.why.get("engine", ""))
        ratio("D engine stream GB/s", None, ">= 1.5", "D GB/s", why)
    else:
        ratio("D engine stream GB/s", es.gbps, ">= 1.5", "D GB/s")
    for lb in r.loopback:
        ratio(f"D gRPC wire GB/s, {lb.dtype}", lb.grpc, ">= 1.5", "D GB/s")
        ratio(f"D gRPC wire / raw socket, {lb.dtype}", lb.grpc / lb.raw, ">= 0.4", "D vs raw")
        if es is not None and lb.dtype == "float32":
            ratio("D engine stream / raw socket, float32", es.gbps / lb.raw, ">= 0.4", "D vs raw")
    memcpy, shm = _median(r.memcpy_gbps), _median(r.shm_gbps)
    ratio(
        "E shared-memory transport / memcpy",
        shm / memcpy if shm and memcpy else None,
        ">= 0.8",
        "E vs memcpy",
        r.why.get("E", ""),
    )
    reader = _median(r.shm_read_gbps)
    if reader and memcpy:
        lines.append(f"  {'E   client side alone / memcpy':<52}{reader / memcpy:>9.3f}   (report)")
    return lines


def report(r: Results) -> list[str]:
    """The printed report: set-up, table, transports, ratios."""
    head = [
        "",
        f"command: {r.command}",
        f"machine: {r.cpu_count} cores; pinned to {len(r.cores)} "
        f"({','.join(map(str, r.cores))}): engine ({WORKERS} decode workers), client, "
        f"DataLoader ({WORKERS} workers) and wire server all on them",
        f"corpus: {r.corpus}",
        "sample: 16x224x224 volume, 12x4096 ECG, 512 tokens; flip + random ECG window",
        f"plan: {r.plan}",
        "CPU = user + system, per sample: A of the DataLoader's process tree, B and C of "
        "the client process alone (the engine is another process)",
        "GB/s = 10^9 bytes per second; served KB = the engine's "
        "bytes_served per sample (frame bytes, also when they went by shared memory)",
        "",
    ]
    tail = []
    if r.leftover_segments:
        tail = ["", f"WARNING: segments left in /dev/shm by this run: {r.leftover_segments}"]
    return head + _client_lines(r) + _transport_lines(r) + _ratio_lines(r) + tail


def _jsonable(r: Results) -> dict[str, Any]:
    body = dataclasses.asdict(r)
    if r.peer is not None:
        body["peer"]["cpu_ms"] = r.peer.cpu_ms
    for c, out in zip(r.clients, body["clients"], strict=True):
        out["client"]["cpu_ms"] = c.client.cpu_ms
        out["gbps"] = c.gbps
    if r.engine_stream is not None:
        body["engine_stream"]["gbps"] = r.engine_stream.gbps
    return body


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks client", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="16 studies of 16x256x256, fewer epochs"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-output"), help="work directory")
    parser.add_argument("--cores", type=int, default=2, help="pin everything to N cores (0: all)")
    args = parser.parse_args(argv)
    corpus, plan = (QUICK_CORPUS, QUICK_PLAN) if args.quick else (FULL_CORPUS, FULL_PLAN)
    print(f"corpus: {corpus.describe()} (cached under {args.out})", flush=True)
    paths = cold_corpus(args.out, corpus, SPEC)
    cores = pin_cores(args.cores)  # after the corpus: generation and packing use every core
    results = Results(
        command=shlex.join([sys.executable, "-m", "benchmarks", "client", *argv]),
        cores=cores,
        cpu_count=os.cpu_count() or 0,
        corpus=corpus.describe(),
        plan=dataclasses.asdict(plan),
    )
    run(results, paths.lean, paths.dataset, SPEC, plan)
    print("\n".join(report(results)), flush=True)
    out = args.out / "client"
    out.mkdir(parents=True, exist_ok=True)
    name = f"{'quick' if args.quick else 'full'}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    (out / name).write_text(json.dumps(_jsonable(results), indent=1))
    print(f"\nwritten: {out / name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
