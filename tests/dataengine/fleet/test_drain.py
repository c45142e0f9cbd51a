"""Graceful drain: on SIGTERM an engine answers NOT_SERVING, refuses new
streams with UNAVAILABLE, lets the open ones finish, then exits 0; a client
moves the drained engine's shards to the others without losing a sample."""

from __future__ import annotations

import signal
import time

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dataengine.client import EngineClient
from dataengine.client.digest import batch_digest
from dataengine.order import epoch_order, ranked_owners
from dataengine.pipeline.spec import PipelineSpec
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _wait_for_health(channel: grpc.Channel, status: int, timeout_s: float = 30.0) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout_s
    while True:
        got = stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        if got == status or time.monotonic() > deadline:
            assert got == status
            return
        time.sleep(0.05)


def test_sigterm_finishes_the_open_stream_refuses_new_ones_and_exits_0(start_fleet) -> None:
    (engine,) = start_fleet(1, "--grace", "60")
    # 12 samples of 4 MB each (each id once: engines refuse duplicates), left
    # unread while the signal lands: the stream outlives it.
    ids = list(range(12))
    big = PipelineSpec(image_slices=16, image_resize=256, image_crop=256).to_proto()
    with grpc.insecure_channel(
        engine.address, options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as channel:
        stub = pb_grpc.DataEngineStub(channel)
        request = pb.SampleRequest(sample_ids=ids, seed=1, pipeline=big)
        stream = stub.StreamSamples(request, timeout=120)
        first = next(stream)
        engine.proc.send_signal(signal.SIGTERM)
        _wait_for_health(channel, _NOT_SERVING)
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.StreamSamples(pb.SampleRequest(sample_ids=[0]), timeout=30))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "draining" in refused.value.details()
        assert engine.proc.poll() is None  # still serving the open stream
        rest = list(stream)
    got = [first.sample_id] + [s.sample_id for s in rest]
    assert sorted(got) == sorted(ids)
    assert not any(s.HasField("error") for s in rest)
    assert engine.proc.wait(60) == 0
    assert any("dataengine: stopped" in line for line in engine.output)


def test_rolling_restart_drained_engine_leaves_restarted_one_rejoins(
    shared_fleet, start_fleet, samples_served, wait_until
) -> None:
    """Drain one of two engines mid-epoch, restart it on the same port: the
    client moves its shards away, then back once it answers SERVING again;
    the bytes of every batch stay those of a one-engine run."""
    (victim,) = start_fleet(1, "--grace", "30")
    survivor = shared_fleet[0].address
    endpoints = [survivor, victim.address]
    batch = 2
    # The victim owns the epoch's last sample (shard id == sample id), which
    # is requested only after it has rejoined (prefetch_batches=1).
    seed = next(
        s
        for s in range(1000)
        if ranked_owners(int(epoch_order(12, s, 0)[-1]), endpoints)[0] == victim.address
    )
    with EngineClient(survivor, seed=seed, batch_size=batch) as client:
        reference = [batch_digest(b) for b in client.batches(epochs=1)]
    with EngineClient(
        endpoints, seed=seed, batch_size=batch, prefetch_batches=1, health_interval_s=0.2
    ) as client:
        batches = client.batches(epochs=1)
        got = [next(batches)]
        victim.proc.send_signal(signal.SIGTERM)
        assert victim.proc.wait(60) == 0
        wait_until(lambda: client.live_endpoints() == [survivor])
        got.append(next(batches))  # from the survivor alone
        port = victim.address.rsplit(":", 1)[1]
        (restarted,) = start_fleet(1, "--port", port)
        assert restarted.address == victim.address
        wait_until(lambda: client.live_endpoints() == endpoints)
        got += list(batches)
        stats = client.stats.snapshot()
    assert [batch_digest(b) for b in got] == reference
    ids = torch.cat([b["sample_id"] for b in got]).tolist()
    assert sorted(ids) == list(range(12))
    assert victim.address in {e.endpoint for e in stats["events"] if e.kind == "dead"}
    assert victim.address in {e.endpoint for e in stats["events"] if e.kind == "live"}
    wait_until(lambda: samples_served(restarted.address) > 0)
    assert samples_served(restarted.address) > 0
