"""Batches in the wire dtypes a job asks for: stacked once, in the dtype they
travelled in, bit-identical to rounding the float32 batch."""

from __future__ import annotations

import dataclasses
import tracemalloc

import grpc
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dataengine.client import EngineClient, EngineIterableDataset
from dataengine.client._buffers import BatchBuffers
from dataengine.client._collate import Frame, assemble
from dataengine.client.digest import batch_digest
from dataengine.errors import DecodeError
from dataengine.frame import read_sample
from dataengine.pipeline.spec import Augmentations, PipelineSpec
from dataengine.pipeline.wire import encode_sample
from dataengine.v1 import dataengine_pb2 as pb
from dataengine.v1 import dataengine_pb2_grpc as pb_grpc

AUGMENTED = PipelineSpec(augment=Augmentations.all_on())


def _spec(**dtypes: str) -> PipelineSpec:
    return PipelineSpec(**{**AUGMENTED.__dict__, **dtypes})  # type: ignore[arg-type]


def _arrays(sid: int, slices: int = 2, crop: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(sid)
    return {
        "image": rng.random((slices, crop, crop), dtype=np.float32),
        "waveform": rng.standard_normal((12, 50), dtype=np.float32),
        "tokens": rng.integers(0, 259, 6),
        "text_mask": np.ones(6, dtype=bool),
        "modality_mask": np.array([1, 1], dtype=np.uint8),
    }


def _samples(spec: PipelineSpec, ids: list[int], **shape: int) -> list[Frame]:
    """Served frames, read in place as the client reads them."""
    frames = []
    for i in ids:
        data = encode_sample(i, _arrays(i, **shape), spec)
        frames.append(Frame(data, read_sample(data)))
    return frames


def stack_samples(frames: list[Frame]) -> dict[str, torch.Tensor]:
    batch, unreadable = assemble(frames, BatchBuffers(pin_memory=False, keep=2))
    assert unreadable == []
    return batch


# -- collation, no engine ------------------------------------------------------


@pytest.mark.parametrize(
    ("image_dtype", "wave_dtype", "image_torch", "wave_torch"),
    [
        ("float32", "float32", torch.float32, torch.float32),
        ("bfloat16", "bfloat16", torch.bfloat16, torch.bfloat16),
        ("float16", "float16", torch.float16, torch.float16),
        ("uint8", "bfloat16", torch.uint8, torch.bfloat16),
    ],
)
def test_stack_keeps_the_wire_dtype_and_the_values(
    image_dtype: str, wave_dtype: str, image_torch: torch.dtype, wave_torch: torch.dtype
) -> None:
    spec = _spec(image_dtype=image_dtype, wave_dtype=wave_dtype)
    batch = stack_samples(_samples(spec, [4, 1, 9]))
    assert batch["sample_id"].tolist() == [4, 1, 9]
    assert batch["image"].dtype == image_torch and batch["image"].shape == (3, 2, 8, 8)
    assert batch["waveform"].dtype == wave_torch and batch["waveform"].shape == (3, 12, 50)
    assert batch["tokens"].dtype == torch.int64 and batch["text_mask"].dtype == torch.bool
    image = torch.stack([torch.from_numpy(_arrays(i)["image"]) for i in (4, 1, 9)])
    wave = torch.stack([torch.from_numpy(_arrays(i)["waveform"]) for i in (4, 1, 9)])
    if image_torch == torch.uint8:
        assert torch.equal(batch["image"], torch.round(image * 255).to(torch.uint8))
    else:
        assert torch.equal(batch["image"], image.to(image_torch))
    assert torch.equal(batch["waveform"], wave.to(wave_torch))
    assert all(t.is_contiguous() for t in batch.values())
    batch["image"][0] = 0  # the batch is the caller's, writable


def test_assembly_copies_each_tensor_once_into_the_batch_buffer() -> None:
    spec = _spec(image_dtype="bfloat16", wave_dtype="bfloat16")
    samples = _samples(spec, list(range(8)), slices=8, crop=128)
    wire = sum(t.nbytes for s in samples for t in s.view.tensors)
    buffers = BatchBuffers(pin_memory=False, keep=2)
    tracemalloc.start()
    try:
        batch, _ = assemble(samples, buffers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stacked = sum(t.numel() * t.element_size() for t in batch.values())
    assert stacked >= wire  # every tensor byte landed in the batch...
    # ... and nothing of its size was made on the way: no parse copy, no
    # per-sample array (torch's buffer is outside tracemalloc's view).
    assert peak < 256 << 10
    # The buffer goes back on release and the next batch of the layout reuses it.
    image = batch["image"].data_ptr()
    batch.release()
    assert batch == {}
    again, _ = assemble(samples, buffers)
    assert again["image"].data_ptr() == image
    assert (buffers.allocated, buffers.reused) == (1, 1)


def test_empty_batch_has_only_ids() -> None:
    batch = stack_samples([])
    assert list(batch) == ["sample_id"] and batch["sample_id"].dtype == torch.int64


def test_samples_that_disagree_are_a_decode_error() -> None:
    a, b = _samples(_spec(image_dtype="bfloat16"), [1, 2])
    (c,) = _samples(AUGMENTED, [3])
    with pytest.raises(DecodeError, match="different dtypes"):
        stack_samples([a, c])
    (d,) = _samples(AUGMENTED, [4], crop=16)
    with pytest.raises(DecodeError, match="differ in shape"):
        stack_samples([c, d])
    short = Frame(b.buffer, dataclasses.replace(b.view, tensors=b.view.tensors[:-1]))
    with pytest.raises(DecodeError, match="carries tensors"):
        stack_samples([a, short])


# -- against a real engine -------------------------------------------------------


def _epoch(engine: str, spec: PipelineSpec) -> list[dict[str, torch.Tensor]]:
    with EngineClient(engine, pipeline=spec, seed=5, batch_size=5) as client:
        return list(client.batches(epochs=1))


@pytest.mark.slow
def test_engine_batches_are_the_float32_batches_rounded(engine: str) -> None:
    reference = _epoch(engine, AUGMENTED)
    for image_dtype, wave_dtype in (("bfloat16", "bfloat16"), ("uint8", "float16")):
        batches = _epoch(engine, _spec(image_dtype=image_dtype, wave_dtype=wave_dtype))
        assert len(batches) == len(reference)
        for got, ref in zip(batches, reference, strict=True):
            assert got["image"].dtype == getattr(torch, image_dtype)
            assert got["waveform"].dtype == getattr(torch, wave_dtype)
            if image_dtype == "uint8":
                want = torch.round(ref["image"] * 255).to(torch.uint8)
            else:
                want = ref["image"].to(torch.bfloat16)
            assert torch.equal(got["image"], want)
            assert torch.equal(got["waveform"], ref["waveform"].to(getattr(torch, wave_dtype)))
            for name in ("sample_id", "tokens", "text_mask", "modality_mask"):
                assert torch.equal(got[name], ref[name])
    # Digests hash the bfloat16 bits as they are: stable across runs, not float32's.
    bf16_spec = _spec(image_dtype="bfloat16", wave_dtype="bfloat16")
    first = [batch_digest(b) for b in _epoch(engine, bf16_spec)]
    assert first == [batch_digest(b) for b in _epoch(engine, bf16_spec)]
    assert not set(first) & {batch_digest(b) for b in reference}


@pytest.mark.slow
def test_iterable_dataset_gives_the_same_bfloat16_batches(engine: str) -> None:
    spec = _spec(image_dtype="bfloat16", wave_dtype="bfloat16")
    dataset = EngineIterableDataset(engine, epoch=0, pipeline=spec, seed=5, batch_size=5)
    batches = list(DataLoader(dataset, batch_size=None, num_workers=0))
    assert batches[0]["image"].dtype == torch.bfloat16
    assert batches[0]["waveform"].dtype == torch.bfloat16
    assert [batch_digest(b) for b in batches] == [batch_digest(b) for b in _epoch(engine, spec)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (pb.PipelineSpec(wave_dtype=pb.UINT8), "pipeline.wave_dtype"),
        (pb.PipelineSpec(image_dtype=pb.INT64), "pipeline.image_dtype"),
    ],
)
def test_an_engine_refuses_a_wire_dtype_it_cannot_serve(
    engine: str, spec: pb.PipelineSpec, field: str
) -> None:
    request = pb.SampleRequest(pipeline=spec, sample_ids=[0])
    with grpc.insecure_channel(engine) as channel:
        stub = pb_grpc.DataEngineStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.StreamSamples(request, timeout=30))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field)
