"""The capacity signal of a real engine: worker busy fraction, queue wait,
CPU per sample by stage and source, capacity, and the demand its clients
report, in GetStats, Prometheus and ``dataengine stats``."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest

from dataengine.demand import DEMAND_METADATA, format_demand
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

# The contract with dashboards and alerts (OBSERVE): exported from the start.
CAPACITY_METRICS = (
    "medstream_engine_workers 2.0",
    "medstream_engine_worker_busy_fraction ",
    "medstream_engine_capacity_samples_per_second ",
    'medstream_engine_sample_cpu_seconds_total{source="decoded",stage="decode"} ',
    'medstream_engine_queue_wait_seconds_bucket{le="+Inf"} ',
    "medstream_engine_queue_wait_seconds_sum ",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def test_capacity_signal_after_a_stream(packed_dataset: Path, start_engine) -> None:
    port = _free_port()
    proc = start_engine([packed_dataset], "--metrics-port", str(port), "--ram-cache", "0")
    idle = _metrics(port)
    for line in CAPACITY_METRICS:
        assert line in idle, line
    assert "medstream_engine_capacity_samples_per_second 0.0" in idle

    report = (DEMAND_METADATA, format_demand("trainer0", 42.5, 0.125))
    with grpc.insecure_channel(proc.address) as channel:
        stub = pb_grpc.DataEngineStub(channel)
        ids = list(range(12))
        got = list(stub.StreamSamples(pb.SampleRequest(sample_ids=ids), metadata=(report,)))
        assert len(got) == 12
        bad = (DEMAND_METADATA, "not a report")  # ignored, the call is served
        assert len(list(stub.StreamSamples(pb.SampleRequest(sample_ids=[0]), metadata=(bad,))))
        c = stub.GetStats(pb.GetStatsRequest(), timeout=30).capacity

    assert c.workers == 2 and c.window_seconds > 0
    assert c.tasks == 13
    assert 0 < c.worker_busy_fraction <= 1
    assert c.capacity_samples_per_second > 0
    assert c.cpu_seconds_per_sample > 0 and c.worker_seconds_per_sample > 0
    assert c.queue_wait_mean_seconds >= 0
    decoded = next(s for s in c.sources if s.source == "decoded")
    assert decoded.samples == 13  # no L0: every sample decoded
    assert decoded.cpu_seconds["decode"] > 0
    assert [(d.client, d.samples_per_second, d.data_wait_fraction) for d in c.clients] == [
        ("trainer0", 42.5, 0.125)
    ]

    text = _metrics(port)
    assert "medstream_engine_queue_wait_seconds_count 13.0" in text
    cpu = next(
        line
        for line in text.splitlines()
        if line.startswith(
            'medstream_engine_sample_cpu_seconds_total{source="decoded",stage="decode"}'
        )
    )
    assert float(cpu.split()[-1]) > 0
    human = subprocess.run(
        [sys.executable, "-m", "dataengine", "stats", proc.address],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "capacity (last" in human
    assert "trainer0" in human
