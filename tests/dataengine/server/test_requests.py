"""Requests are validated in the front, once, with the right status code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import torch

from dataengine.client import EngineClient
from dataengine.pipeline.spec import PipelineSpec
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


def _status(address: str, request: pb.SampleRequest) -> tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.DataEngineStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.StreamSamples(request, timeout=30))
    return info.value.code(), info.value.details()


@pytest.mark.parametrize(
    ("tokenizer", "message"),
    [
        ("vocab.json", "offers only 'byte'"),
        ("/etc/passwd", "offers only 'byte'"),
    ],
)
def test_tokenizers_are_refused_without_a_tokenizer_dir(
    engine: str, tokenizer: str, message: str
) -> None:
    request = pb.SampleRequest(pipeline=pb.PipelineSpec(tokenizer=tokenizer), sample_ids=[0])
    code, details = _status(engine, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("pipeline.tokenizer") and message in details


def test_oversized_samples_are_refused(engine: str) -> None:
    spec = pb.PipelineSpec(image_slices=512, image_resize=1024, image_crop=1024)
    code, details = _status(engine, pb.SampleRequest(pipeline=spec, sample_ids=[0]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("pipeline: one sample would need")


def test_vocab_tokenizer_from_the_engines_tokenizer_dir(
    packed_dataset: Path, start_engine, tmp_path: Path
) -> None:
    vocab_dir = tmp_path / "tokenizers"
    vocab_dir.mkdir()
    tokens = ["FINDINGS", "IMPRESSION", " lesion", " quadrant", "ECG"]
    (vocab_dir / "radiology.json").write_text(
        json.dumps({"type": "medstream-vocab", "tokens": tokens})
    )
    proc = start_engine([packed_dataset], "--tokenizer-dir", str(vocab_dir))
    code, details = _status(
        proc.address,
        pb.SampleRequest(pipeline=pb.PipelineSpec(tokenizer="../radiology.json"), sample_ids=[0]),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "file name, not a path" in details
    spec = PipelineSpec(tokenizer="radiology.json", text_tokens=512)
    with EngineClient(proc.address, pipeline=spec, batch_size=12) as client:
        (batch,) = list(client.batches(epochs=1))
    ids = batch["tokens"][batch["text_mask"]]
    assert int(ids.max()) < 259 + len(tokens)
    assert bool((ids >= 259).any()), "the vocabulary's multi-byte tokens are used"
    assert torch.equal(batch["tokens"][:, 0], torch.full((12,), 257))  # BOS


def test_empty_dataset_name_on_a_multi_dataset_engine(
    packed_dataset: Path, start_engine, tmp_path: Path
) -> None:
    import shutil

    from dataengine.shards import Manifest

    other = tmp_path / "other"
    shutil.copytree(packed_dataset, other)
    manifest = Manifest.load(other)
    body = json.loads(manifest.to_json())
    body["name"] = "other"
    (other / "manifest.json").write_text(json.dumps(body))
    proc = start_engine([packed_dataset, other])
    code, details = _status(proc.address, pb.SampleRequest(sample_ids=[0]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "dataset: is required: this engine serves other, synthetic"
    with EngineClient(proc.address, dataset="other", batch_size=12) as client:
        assert len(next(client.batches())["sample_id"]) == 12


def test_a_taken_port_is_a_clear_error(packed_dataset: Path, engine: str) -> None:
    port = engine.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, "-m", "dataengine", "serve", str(packed_dataset), "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"port: cannot bind 127.0.0.1:{port}" in result.stderr


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                out.append(int(entry.name))
    return out


def test_a_killed_decode_worker_is_replaced_and_nothing_is_lost(
    packed_dataset: Path, start_engine
) -> None:
    proc = start_engine([packed_dataset], "--ram-cache", "0")
    workers = _children(proc.proc.pid)
    assert len(workers) >= 2
    os.kill(workers[-1], signal.SIGKILL)
    time.sleep(0.5)
    with EngineClient(proc.address, batch_size=4, seed=1) as client:
        ids = torch.cat([b["sample_id"] for b in client.batches(epochs=1)]).tolist()
        assert client.lost_count == 0
    assert sorted(ids) == list(range(12))
    assert proc.proc.poll() is None, "the engine survives"
    assert any("pool is broken; starting 2 new workers" in line for line in proc.output)
