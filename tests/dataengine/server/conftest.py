"""Fixtures for the tests of where a sample's prefix comes from (prepared
views, the decode cache, a fresh decode): a small packed dataset (6 tiny
studies, 2 per shard), a copy with a study that fails to decode, the job
shape they are served with, and the batch digests of an epoch."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import lmdb
import pytest

from dataengine.client import EngineClient
from dataengine.client.digest import batch_digest
from dataengine.deid.keys import load_key
from dataengine.pack import PackConfig, pack_dataset
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.shards import Dataset, encode_record
from dataengine.shards._writer import sample_key
from dataengine.synth import generate_corpus
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

STUDIES = 6
BAD_STUDY = 1  # its first DICOM slice is replaced by bytes that do not decode
SEED = 9
# A small job shape with augmentations on, so digests depend on every byte.
COLD_SPEC = PipelineSpec(
    image_slices=4,
    image_resize=24,
    image_crop=16,
    wave_rate_hz=50.0,
    wave_samples=64,
    text_tokens=32,
    augment=Augmentations(flip=True, random_crop=True, hu_jitter=20.0, wave_random_window=True),
)


@dataclass(frozen=True)
class Epoch:
    """What a client got for one epoch: a digest per batch, lost samples."""

    digests: list[str]
    lost: list[tuple[int, str, str]]  # sample id, kind, message


def fetch_epoch(endpoints: str | Sequence[str], epoch: int = 0, **options: Any) -> Epoch:
    """One epoch of ``COLD_SPEC`` batches of 2 from ``endpoints`` (``options``:
    more ``ClientConfig`` fields)."""
    config = {"pipeline": COLD_SPEC, "seed": SEED, "batch_size": 2, **options}
    with EngineClient(endpoints, **config) as client:
        client.load_state_dict({"seed": SEED, "epoch": epoch, "position": 0})
        digests = [batch_digest(b) for b in client.batches(epochs=1)]
        lost = [(x.sample_id, x.kind, x.message) for x in client.lost]
    return Epoch(digests, lost)


def engine_stats(address: str) -> pb.EngineStats:
    with grpc.insecure_channel(address) as channel:
        return pb_grpc.DataEngineStub(channel).GetStats(pb.GetStatsRequest(), timeout=30)


def sources(address: str) -> dict[str, int]:
    """Served samples of the one dataset by source."""
    (row,) = engine_stats(address).sources
    return {k: getattr(row, k) for k in ("prepared", "decode_cache", "decoded", "ram")}


def tier(address: str, name: str) -> pb.CacheStats:
    return {c.tier: c for c in engine_stats(address).caches}[name]


def copy_dataset(dataset: Path, to: Path) -> Path:
    return Path(shutil.copytree(dataset, to))


def rewrite_value(shard_file: Path, sample_id: int, value: bytes) -> None:
    """Overwrite one stored value of an LMDB shard in place."""
    env = lmdb.open(str(shard_file), subdir=False, lock=False)
    try:
        with env.begin(write=True) as txn:
            txn.put(sample_key(sample_id), value)
    finally:
        env.close()


@pytest.fixture(scope="session")
def cold_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A packed dataset no test writes into (copy it to prepare)."""
    raw = tmp_path_factory.mktemp("cold-raw")
    generate_corpus(raw, STUDIES, seed=4, slices=4, rows=32, cols=32, ecg_seconds=2)
    out = tmp_path_factory.mktemp("cold-ds") / "cold"
    config = PackConfig(key=load_key(insecure_demo=True), shard_samples=2, workers=1)
    pack_dataset(raw, out, config)
    return out


@pytest.fixture(scope="session")
def cold_damaged(cold_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cold_dataset`` with study ``BAD_STUDY`` failing to decode."""
    dataset = copy_dataset(cold_dataset, tmp_path_factory.mktemp("cold-bad") / "cold")
    with Dataset(dataset) as ds:
        record = ds.read(BAD_STUDY)
        shard_file = ds.shard_path(ds.shard_of(BAD_STUDY))
    record.images[0].data = b"DICM but not really a DICOM file" * 4
    rewrite_value(shard_file, BAD_STUDY, encode_record(record))
    return dataset


@pytest.fixture(scope="session")
def cold_reference(cold_dataset: Path, start_session_engine: Callable) -> dict[int, Epoch]:
    """Epochs 0 and 1 from a fresh-decode engine (no L0, no cache dir)."""
    proc = start_session_engine([cold_dataset], "--workers", "1", "--ram-cache", "0")
    return {epoch: fetch_epoch(proc.address, epoch) for epoch in (0, 1)}
