"""Helpers of the shared-memory tests (``test_shared_memory*.py``): real
client processes, the segments in /dev/shm, polling for "once the other
side notices" (generous timeouts, never a speed claim)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from dataengine.client import EngineClient
from dataengine.client.digest import batch_digest
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.shm import SHM_DIR
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

SEED = 11
AUGMENTED = PipelineSpec(augment=Augmentations.all_on())
WAIT_S = 60.0  # longest wait for the other side to notice

# A client process. argv[1] is JSON: endpoints, epochs (null: until the
# file "stop" names exists), pause_s between batches, client (more
# EngineClient keywords). It prints "SEGMENT <name> <endpoint> <receive
# stats JSON>" for each link attached (as it sees it between batches),
# "BATCH <count>" after each batch and "RESULT <JSON>" at the end.
_CLIENT = """
import json, os, sys, time
from dataengine.client import EngineClient
from dataengine.client.digest import batch_digest
from dataengine.pipeline.spec import Augmentations, PipelineSpec

options = json.loads(sys.argv[1])
client = EngineClient(
    options["endpoints"], pipeline=PipelineSpec(augment=Augmentations.all_on()),
    **{"seed": 11, "batch_size": 2, "health_interval_s": 0.5, **options["client"]},
)
digests, ids, announced = [], [], 0
for batch in client.batches(epochs=options["epochs"]):
    digests.append(batch_digest(batch))
    ids.append(batch["sample_id"].tolist())
    batch.release()
    stats = client.stats.snapshot()
    attached = [e for e in stats["events"] if e.kind == "shm_attached"]
    for e in attached[announced:]:
        print("SEGMENT", e.detail, e.endpoint, json.dumps(stats["receive"]), flush=True)
    announced = len(attached)
    print("BATCH", len(digests), flush=True)
    if options["stop"] and os.path.exists(options["stop"]):
        break
    time.sleep(options["pause_s"])
stats = client.stats.snapshot()
client.close()
result = {
    "digests": digests,
    "ids": ids,
    "receive": stats["receive"],
    "failures": stats["shared_memory_failures"],
    "events": [[e.kind, e.endpoint, e.detail] for e in stats["events"]],
    "lost": [[x.sample_id, x.kind] for x in client.lost],
}
print("RESULT", json.dumps(result), flush=True)
"""


def segments_of(pid: int) -> list[str]:
    """Names of the segments in /dev/shm that process ``pid`` created."""
    pattern = re.compile(rf"^medstream-\d+-{pid}-\d+-[0-9a-f]{{32}}$")
    return sorted(p.name for p in SHM_DIR.iterdir() if pattern.match(p.name))


def remove_segments_of(pid: int) -> list[str]:
    """Unlink the segments of ``pid``; return their names."""
    names = segments_of(pid)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (SHM_DIR / name).unlink()
    return names


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    """``predicate()``'s first true value, polled; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.1)


def engine_stats(address: str) -> pb.EngineStats:
    with grpc.insecure_channel(address) as channel:
        return pb_grpc.DataEngineStub(channel).GetStats(pb.GetStatsRequest(), timeout=30)


def linked(address: str, count: int) -> bool:
    """The engine at ``address`` holds ``count`` segments now."""
    return engine_stats(address).shared_segments == count


def events(client: EngineClient, kind: str) -> list[tuple[str, str]]:
    """``(endpoint, detail)`` of the client's events of ``kind``."""
    return [(e.endpoint, e.detail) for e in client.stats.snapshot()["events"] if e.kind == kind]


def reference(
    address: str, batches: int, spec: PipelineSpec = AUGMENTED, **options: Any
) -> list[str]:
    """Digests of the first ``batches`` batches of 2, inside the gRPC
    messages only (no shared memory, no data channel)."""
    config = {"seed": SEED, "batch_size": 2, **options}
    with EngineClient(
        address, pipeline=spec, shared_memory=False, data_channel=False, **config
    ) as client:
        stream = client.batches()
        return [batch_digest(next(stream)) for _ in range(batches)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ClientProcess:
    """A real client process running ``_CLIENT``; its output is read on a
    thread so that waits time out. Creating ``stop_file`` ends its stream
    when it was started with ``stop``."""

    def __init__(self, endpoints: list[str], options: dict[str, Any], stop_file: Path) -> None:
        self.stop_file = stop_file
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, json.dumps({"endpoints": endpoints, **options})],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _fail(self, state: str) -> None:
        pytest.fail(
            f"client {self.proc.pid} {state} (rc {self.proc.poll()}):\n"
            + "".join(self.output[-60:])
        )

    def expect(self, prefix: str, timeout: float = WAIT_S) -> str:
        """What follows ``prefix`` on the next line that starts with it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._fail(f"printed no {prefix!r} within {timeout:.0f}s")
            if line is None:
                self.proc.wait(30)  # its output ended: it is exiting
                self._fail("exited")
            elif line.startswith(prefix + " "):
                return line[len(prefix) + 1 :].strip()

    def batches(self, count: int) -> bool:
        """Wait for ``count`` more batches; False if the process ended first."""
        for _ in range(count):
            try:
                self.expect("BATCH")
            except pytest.fail.Exception:
                if self.proc.poll() is None:
                    raise
                return False
        return True

    def segment(self) -> tuple[str, str, dict[str, Any]]:
        """The next link the client attached: segment name, engine, and the
        client's receive stats when it saw it."""
        name, endpoint, receive = self.expect("SEGMENT").split(" ", 2)
        return name, endpoint, json.loads(receive)

    def result(self) -> dict[str, Any]:
        """The client's final report; it must have exited cleanly."""
        text = self.expect("RESULT", timeout=120)
        if self.proc.wait(30) != 0:
            self._fail("failed after its result")
        return json.loads(text)

    def kill(self) -> None:
        """SIGKILL, and wait for the process to be gone."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)


@pytest.fixture
def start_client(tmp_path: Path) -> Iterator[Callable[..., ClientProcess]]:
    """Factory: ``start_client(endpoints, epochs=None, pause_s=0.02, stop=
    False, **client_keywords)``; with ``stop``, creating the client's
    ``stop_file`` ends its stream. At teardown every client is killed and
    its segments removed, pass or fail."""
    started: list[ClientProcess] = []

    def _start(
        endpoints: list[str],
        epochs: int | None = None,
        pause_s: float = 0.02,
        stop: bool = False,
        **client: Any,
    ) -> ClientProcess:
        stop_file = tmp_path / f"stop-{len(started)}"
        options = {
            "epochs": epochs,
            "pause_s": pause_s,
            "stop": str(stop_file) if stop else "",
            "client": client,
        }
        process = ClientProcess(endpoints, options, stop_file)
        started.append(process)
        return process

    try:
        yield _start
    finally:
        for process in started:
            process.kill()
            remove_segments_of(process.proc.pid)


@pytest.fixture
def no_segment_left() -> Iterator[None]:
    """Every in-process client is closed by its test, so none of this
    process's segments may remain (they are removed anyway, so that one
    failure stays one)."""
    yield
    left = remove_segments_of(os.getpid())
    assert not left, f"segments of this process left in {SHM_DIR}: {left}"


@pytest.fixture(scope="module")
def shm_engine(start_module_engine, packed_dataset: Path) -> tuple[str, int]:
    """``(address, metrics port)`` of an engine shared by one module's tests
    (each leaves it running, with no client linked once it notices)."""
    port = free_port()
    engine = start_module_engine([packed_dataset], "--metrics-port", str(port))
    return engine.address, port


def freeze_and_kill(*procs: subprocess.Popen[str]) -> None:
    """SIGKILL ``procs`` together: all are stopped first, so none can see
    another die and clean up after it."""
    for proc in procs:
        proc.send_signal(signal.SIGSTOP)
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait(30)
