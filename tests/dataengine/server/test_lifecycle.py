"""An engine started and stopped in-process leaves no process, thread or port
behind (one lifecycle: start, stop, context manager)."""

from __future__ import annotations

import multiprocessing
import signal
import socket
import threading
import time
from pathlib import Path

import grpc
import pytest

from dataengine.errors import ConfigError
from dataengine.server import ServerConfig, create_server
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


def _new_threads(before: set[threading.Thread], timeout: float = 10.0) -> set[threading.Thread]:
    """Threads alive now that were not alive ``before``, once they had
    ``timeout`` seconds to finish (threads of earlier tests may end meanwhile)."""
    deadline = time.monotonic() + timeout
    while (new := set(threading.enumerate()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    return new


def test_start_serve_stop_leaves_nothing_running(packed_dataset: Path) -> None:
    threads_before = set(threading.enumerate())
    config = ServerConfig(datasets=(packed_dataset,), port=0, workers=2, metrics_port=0)
    with create_server(config) as engine:
        assert engine.port > 0 and engine.metrics_port
        assert len(multiprocessing.active_children()) >= 2
        with grpc.insecure_channel(engine.address) as channel:
            stub = pb_grpc.DataEngineStub(channel)
            samples = list(stub.StreamSamples(pb.SampleRequest(sample_ids=[0, 1]), timeout=60))
        assert [s.sample_id for s in sorted(samples, key=lambda s: s.sample_id)] == [0, 1]
        address, metrics_port = engine.address, engine.metrics_port
    assert multiprocessing.active_children() == []
    assert _new_threads(threads_before) == set()
    host, port = address.rsplit(":", 1)
    for p in (int(port), metrics_port):
        with socket.socket() as s:
            s.bind((host, p))  # the ports were released


def test_bad_config_names_the_field(packed_dataset: Path) -> None:
    with pytest.raises(ConfigError, match=r"^server\.workers"):
        ServerConfig(datasets=(packed_dataset,), workers=-1)
    with pytest.raises(ConfigError, match=r"^server\.datasets"):
        ServerConfig(datasets=())


def test_a_killed_engine_takes_its_decode_workers_with_it(
    packed_dataset: Path, start_engine
) -> None:
    """SIGKILL gives the engine no chance to stop its pool: the workers must
    notice on their own that their parent is gone and exit, not linger
    reparented to init."""
    import signal

    import psutil

    engine = start_engine([packed_dataset], "--workers", "2")
    children = psutil.Process(engine.proc.pid).children(recursive=True)
    workers = [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]
    assert len(workers) >= 2
    engine.stop(signal.SIGKILL)
    _, alive = psutil.wait_procs(children, timeout=15)
    assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []


def test_sigusr1_prints_every_thread_stack_and_the_engine_keeps_serving(
    packed_dataset: Path, start_engine
) -> None:
    """An operator's first tool on a hung engine: ``kill -USR1 PID``."""
    engine = start_engine([packed_dataset])
    engine.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not any("most recent call first" in line for line in engine.output):
        assert time.monotonic() < deadline, "".join(engine.output)
        time.sleep(0.1)
    with grpc.insecure_channel(engine.address) as channel:
        stats = pb_grpc.DataEngineStub(channel).GetStats(pb.GetStatsRequest(), timeout=10)
    assert stats.engine_id


def test_a_burst_of_sigterms_still_drains_and_exits(packed_dataset: Path, start_engine) -> None:
    """Ctrl-C twice, or a launcher and a test harness both signalling: a
    second SIGTERM that lands while the first one's handler runs must not
    deadlock the engine (it once did, inside ``threading.Event.set``)."""
    engine = start_engine([packed_dataset])
    for _ in range(200):
        engine.proc.send_signal(signal.SIGTERM)
    assert engine.proc.wait(30) == 0, "".join(engine.output)
    assert sum("draining" in line for line in engine.output) == 1
