"""A real engine process on a loopback port, driven by the real grpcurl, the
gRPC health protocol, the client library and Prometheus."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")


def _grpcurl(*args: str) -> str:
    result = subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_grpcurl_lists_and_calls_the_service_through_reflection(engine: str) -> None:
    services = _grpcurl(engine, "list").split()
    assert "dataengine.v1.DataEngine" in services
    assert "grpc.health.v1.Health" in services
    methods = _grpcurl(engine, "list", "dataengine.v1.DataEngine").split()
    assert methods == [
        "dataengine.v1.DataEngine.AttachSharedMemory",
        "dataengine.v1.DataEngine.DescribeDataset",
        "dataengine.v1.DataEngine.GetStats",
        "dataengine.v1.DataEngine.OpenDataChannel",
        "dataengine.v1.DataEngine.StreamSamples",
    ]
    stats = json.loads(_grpcurl("-emit-defaults", engine, "dataengine.v1.DataEngine/GetStats"))
    for field in (
        "engine_id",
        "samples_served",
        "bytes_served",
        "stages",
        "queue_depths",
        "caches",
        "errors",
        "workers",
        "bottleneck_stage",
    ):
        assert field in stats, field
    assert [s["stage"] for s in stats["stages"]] == [
        "read",
        "decompress",
        "decode",
        "augment",
        "serialize",
        "send",
    ]
    assert stats["workers"] == 2
    assert set(stats["queue_depths"]) == {"streams_active", "worker_tasks_pending"}
    assert stats["caches"][0]["tier"] == "L0"
    described = json.loads(_grpcurl("-d", "{}", engine, "dataengine.v1.DataEngine/DescribeDataset"))
    assert described["name"] == "synthetic"
    assert int(described["num_samples"]) == 12


def test_grpcurl_streams_tensors_inline_and_cannot_attach_a_segment_it_lacks(engine: str) -> None:
    """A client without shared memory (grpcurl) gets tensors in the messages,
    also when it names a segment this engine never leased; an attach of a
    segment the engine cannot open is FAILED_PRECONDITION, not a crash."""
    request = {
        "dataset": "synthetic",
        "sample_ids": [3],
        "shared": {"segment": "medstream-1-2-3-" + "0" * 32, "ticket": 1, "slots": [0]},
    }
    out = _grpcurl("-d", json.dumps(request), engine, "dataengine.v1.DataEngine/StreamSamples")
    sample = json.loads(out)
    assert sample["sample_id"] == "3" and "shared" not in sample
    assert [t["name"] for t in sample["tensors"]][:2] == ["image", "waveform"]
    attach = {"segment": "medstream-1-2-3-" + "0" * 32, "nonce": ""}
    result = subprocess.run(
        [
            GRPCURL,
            "-plaintext",
            "-d",
            json.dumps(attach),
            engine,
            "dataengine.v1.DataEngine/AttachSharedMemory",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "FailedPrecondition" in result.stderr and "not attachable here" in result.stderr
    stats = json.loads(_grpcurl("-emit-defaults", engine, "dataengine.v1.DataEngine/GetStats"))
    assert int(stats["transports"]["tcp"]) >= 1 and stats["shared_segments"] == 0


def test_health_reports_serving(engine: str) -> None:
    with grpc.insecure_channel(engine) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "dataengine.v1.DataEngine"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert "SERVING" in _grpcurl(engine, "grpc.health.v1.Health/Check")


def test_unknown_dataset_is_not_found(engine: str) -> None:
    with grpc.insecure_channel(engine) as channel:
        stub = pb_grpc.DataEngineStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.DescribeDataset(pb.DescribeDatasetRequest(dataset="nope"), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert "'nope'" in info.value.details() and "synthetic" in info.value.details()
        request = pb.SampleRequest(dataset="nope", sample_ids=[0])
        with pytest.raises(grpc.RpcError) as info:
            list(stub.StreamSamples(request, timeout=10))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("pipeline", "field"),
    [
        (pb.PipelineSpec(image_resize=32, image_crop=64), "pipeline.image_crop"),
        (pb.PipelineSpec(hu_width=-5), "pipeline.hu_width"),
        (pb.PipelineSpec(augment=pb.Augmentations(wave_scale=1.5)), "pipeline.augment.wave_scale"),
    ],
)
def test_bad_pipeline_parameter_is_invalid_argument_naming_the_field(
    engine: str, pipeline: pb.PipelineSpec, field: str
) -> None:
    with grpc.insecure_channel(engine) as channel:
        stub = pb_grpc.DataEngineStub(channel)
        request = pb.SampleRequest(dataset="synthetic", pipeline=pipeline, sample_ids=[0])
        with pytest.raises(grpc.RpcError) as info:
            list(stub.StreamSamples(request, timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field)


def test_out_of_range_sample_id_is_invalid_argument(engine: str) -> None:
    with grpc.insecure_channel(engine) as channel:
        stub = pb_grpc.DataEngineStub(channel)
        request = pb.SampleRequest(dataset="synthetic", sample_ids=[0, 99])
        with pytest.raises(grpc.RpcError) as info:
            list(stub.StreamSamples(request, timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sample_ids[1]: 99" in info.value.details()


def test_stream_returns_each_requested_sample_with_wire_tensors(engine: str) -> None:
    with grpc.insecure_channel(engine) as channel:
        stub = pb_grpc.DataEngineStub(channel)
        request = pb.SampleRequest(dataset="synthetic", sample_ids=[3, 1, 2], seed=1)
        samples = list(stub.StreamSamples(request, timeout=60))
    assert sorted(s.sample_id for s in samples) == [1, 2, 3]
    for s in samples:
        assert not s.HasField("error")
        shapes = {t.name: (pb.DType.Name(t.dtype), list(t.shape)) for t in s.tensors}
        assert shapes == {
            "image": ("FLOAT32", [8, 64, 64]),
            "waveform": ("FLOAT32", [12, 800]),
            "tokens": ("INT64", [128]),
            "text_mask": ("BOOL", [128]),
            "modality_mask": ("UINT8", [2]),
        }


def test_stats_cli_and_prometheus_show_the_same_counters(
    packed_dataset: Path, start_engine, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    proc = start_engine([packed_dataset], "--metrics-port", str(metrics_port))
    with grpc.insecure_channel(proc.address) as channel:
        stub = pb_grpc.DataEngineStub(channel)
        ids = list(range(12))
        list(stub.StreamSamples(pb.SampleRequest(sample_ids=ids), timeout=60))
        list(stub.StreamSamples(pb.SampleRequest(sample_ids=ids, epoch=1), timeout=60))
    out = subprocess.run(
        [sys.executable, "-m", "dataengine", "stats", proc.address, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    stats = json.loads(out)
    assert int(stats["samples_served"]) == 24
    ram = stats["caches"][0]
    # Epoch 0 decodes and caches every sample; epoch 1 re-augments the cached prefix.
    assert (int(ram["misses"]), int(ram["hits"])) == (12, 12)
    decode = next(s for s in stats["stages"] if s["stage"] == "decode")
    assert int(decode["count"]) == 12
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read()
    metrics = text.decode()
    assert "medstream_engine_samples_served_total 24.0" in metrics
    assert 'medstream_engine_cache_hits_total{tier="L0"} 12.0' in metrics
    assert 'medstream_engine_stage_seconds_total{stage="decode"}' in metrics
    human = subprocess.run(
        [sys.executable, "-m", "dataengine", "stats", proc.address],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "served 24 samples" in human and "bottleneck stage:" in human


def test_sigterm_drains_and_exits_zero(packed_dataset: Path, start_engine) -> None:
    proc = start_engine([packed_dataset])
    assert proc.stop() == 0
    assert any("stopped" in line for line in proc.output)
