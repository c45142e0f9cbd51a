"""A corrupt record is skipped with a data_loss error; the stream goes on and
the client is told which sample was lost."""

from __future__ import annotations

import shutil
import socket
import urllib.request
from pathlib import Path

import grpc
import pytest
import torch

from dataengine.client import EngineClient
from dataengine.errors import DataLossError
from dataengine.shards import Dataset, ShardReader
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


def _flip_a_bit_of(dataset: Path, sample_id: int) -> None:
    """Flip one bit in the middle of ``sample_id``'s stored value, in place."""
    with Dataset(dataset) as ds:
        shard_path = ds.shard_path(ds.shard_of(sample_id))
    with ShardReader(shard_path) as reader:
        value = reader.get(sample_id)
    data = bytearray(shard_path.read_bytes())
    needle = value[len(value) // 2 : len(value) // 2 + 64]
    offset = data.find(needle)
    assert offset > 0 and data.find(needle, offset + 1) == -1
    data[offset + 32] ^= 0x04
    shard_path.write_bytes(bytes(data))


def test_flipped_bit_loses_one_sample_and_nothing_else(
    packed_dataset: Path, start_engine, tmp_path: Path
) -> None:
    damaged = tmp_path / "synthetic"
    shutil.copytree(packed_dataset, damaged)
    _flip_a_bit_of(damaged, 5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    proc = start_engine([damaged], "--metrics-port", str(metrics_port))
    with EngineClient(proc.address, seed=0, batch_size=4) as client:
        batches = list(client.batches(epochs=1))
        lost = list(client.lost)
    served = sorted(torch.cat([b["sample_id"] for b in batches]).tolist())
    assert served == [i for i in range(12) if i != 5]
    assert [(x.sample_id, x.kind) for x in lost] == [(5, "data_loss")]
    assert "checksum" in lost[0].message
    with grpc.insecure_channel(proc.address) as channel:
        stats = pb_grpc.DataEngineStub(channel).GetStats(pb.GetStatsRequest(), timeout=10)
    assert dict(stats.errors) == {"data_loss": 1}
    assert stats.samples_served == 11
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
    text = metrics.read().decode()
    assert 'medstream_engine_errors_total{kind="data_loss"} 1.0' in text


def test_systematic_loss_exhausts_the_failure_budget(
    packed_dataset: Path, start_engine, tmp_path: Path
) -> None:
    damaged = tmp_path / "synthetic"
    shutil.copytree(packed_dataset, damaged)
    for sample_id in range(12):
        _flip_a_bit_of(damaged, sample_id)
    proc = start_engine([damaged])
    with EngineClient(proc.address, batch_size=2, max_consecutive_lost=5) as client:
        with pytest.raises(DataLossError, match="5 samples in a row") as info:
            list(client.batches(epochs=1))
        assert client.lost_count == 5
    assert "data_loss" in str(info.value)
