"""Work done in the engine's decode worker processes.

One task turns one sample id into the serialized ``Sample`` message that goes
on the wire, so the gRPC front never touches tensor data: it forwards bytes.
On a RAM-cache miss the task also returns the prefix (decode + resample)
output so the front can cache it; on a hit the front sends that blob back and
the task only augments and serializes.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dataengine import tensors
from dataengine.errors import DataEngineError
from dataengine.pipeline.augment import augment
from dataengine.pipeline.prefix import run_prefix
from dataengine.pipeline.spec import PipelineSpec
from dataengine.shards import Dataset, decompress_value, parse_record
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["TaskResult", "init_worker", "produce_sample"]

_LOG = logging.getLogger(__name__)
_ROOTS: dict[str, Path] = {}
_OPEN: dict[str, Dataset] = {}


@dataclass
class TaskResult:
    """What a worker hands back. ``timings`` are seconds per stage."""

    sample_id: int
    sample_bytes: bytes
    prefix_blob: bytes | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error_kind: str | None = None


def init_worker(dataset_roots: dict[str, str]) -> None:
    """Process initializer: one intra-op thread per worker (the pool is the
    parallelism) and the dataset roots this engine serves."""
    torch.set_num_threads(1)
    # Ctrl-C in a terminal reaches the whole process group: the engine drains
    # and stops its workers itself, so they must not die mid-task first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _ROOTS.clear()
    _ROOTS.update({name: Path(root) for name, root in dataset_roots.items()})


def _dataset(name: str) -> Dataset:
    ds = _OPEN.get(name)
    if ds is None:
        ds = _OPEN[name] = Dataset(_ROOTS[name])
    return ds


def _pack_prefix(prefix: dict[str, np.ndarray]) -> bytes:
    return pb.Sample(tensors=tensors.encode_all(prefix)).SerializeToString()


def _unpack_prefix(blob: bytes) -> dict[str, np.ndarray]:
    msg = pb.Sample()
    msg.ParseFromString(blob)
    return tensors.decode_all(msg.tensors)


def _load_prefix(
    dataset: str, sample_id: int, spec: PipelineSpec, timings: dict[str, float]
) -> dict[str, np.ndarray]:
    t0 = time.perf_counter()
    value = _dataset(dataset).read_value(sample_id)
    t1 = time.perf_counter()
    record = parse_record(decompress_value(value, sample_id=sample_id), sample_id=sample_id)
    t2 = time.perf_counter()
    timings["read"] = t1 - t0
    timings["decompress"] = t2 - t1
    return run_prefix(record, spec, timings)


def produce_sample(
    dataset: str,
    sample_id: int,
    spec: PipelineSpec,
    seed: int,
    epoch: int,
    prefix_blob: bytes | None,
    want_prefix: bool = True,
) -> TaskResult:
    """Produce one serialized ``Sample``. With ``prefix_blob`` (an L0 hit) only
    augment and serialize; otherwise decode too, and return the prefix when
    ``want_prefix``. Never raises for bad data: the error travels in
    ``Sample.error`` and ``TaskResult.error_kind``."""
    timings: dict[str, float] = {}
    try:
        fresh_blob: bytes | None = None
        if prefix_blob is None:
            prefix = _load_prefix(dataset, sample_id, spec, timings)
            fresh_blob = _pack_prefix(prefix) if want_prefix else None
        else:
            prefix = _unpack_prefix(prefix_blob)
        t0 = time.perf_counter()
        arrays = augment(prefix, spec, seed, epoch, sample_id)
        t1 = time.perf_counter()
        body = pb.Sample(sample_id=sample_id, tensors=tensors.encode_all(arrays))
        data = body.SerializeToString()
        timings["augment"] = t1 - t0
        timings["serialize"] = time.perf_counter() - t1
        return TaskResult(sample_id, data, fresh_blob, timings)
    except DataEngineError as exc:
        kind, message = exc.kind, str(exc)
    except Exception as exc:  # a bug or an unexpected library failure: report, keep serving
        _LOG.exception("sample %d of %s failed", sample_id, dataset)
        kind, message = "internal", f"{type(exc).__name__}: {exc}"
    if "sample" not in message:
        message = f"sample {sample_id}: {message}"
    error = pb.Sample(sample_id=sample_id, error=pb.SampleError(kind=kind, message=message))
    return TaskResult(sample_id, error.SerializeToString(), None, timings, kind)
