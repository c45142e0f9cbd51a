"""Served samples -> one batch of torch tensors, in their wire dtypes.

Each column is copied once, by the stack into the batch: the samples'
tensors are read-only numpy views of their message bytes
(``tensors.storage_view``), stacked, and the stacked array becomes the torch
tensor without a copy. bfloat16 travels as 16-bit patterns; the stacked bits
are viewed as ``torch.bfloat16``, again without a copy. (Python protobuf
hands out each ``bytes`` field as a new ``bytes`` object: that copy out of
the message comes first and cannot be avoided from Python.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dataengine import tensors
from dataengine.errors import DecodeError
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["TORCH_DTYPES", "stack_samples"]

TORCH_DTYPES: dict[int, torch.dtype] = {
    pb.FLOAT32: torch.float32,
    pb.BFLOAT16: torch.bfloat16,
    pb.FLOAT16: torch.float16,
    pb.FLOAT64: torch.float64,
    pb.INT64: torch.int64,
    pb.INT32: torch.int32,
    pb.INT16: torch.int16,
    pb.UINT8: torch.uint8,
    pb.BOOL: torch.bool,
}


def _column(name: str, items: Sequence[pb.Tensor]) -> torch.Tensor:
    code = items[0].dtype
    for t in items:
        if t.dtype != code:
            raise DecodeError(
                f"tensor {name!r}: samples of one batch carry different dtypes "
                f"({pb.DType.Name(code)} and {pb.DType.Name(t.dtype)})"
            )
    stacked = np.stack([tensors.storage_view(t) for t in items])
    if code == pb.BFLOAT16:
        return torch.from_numpy(stacked.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(stacked)


def stack_samples(samples: Sequence[pb.Sample]) -> dict[str, torch.Tensor]:
    """``{"sample_id": int64 [B], name: [B, ...] for each tensor}`` of good
    (error-free) samples, every tensor in the dtype it travelled in.

    Raises ``DecodeError`` when samples disagree on the tensors they carry,
    their dtypes or shapes, or a tensor's bytes do not match its shape."""
    batch = {"sample_id": torch.tensor([s.sample_id for s in samples], dtype=torch.int64)}
    if not samples:
        return batch
    names = [t.name for t in samples[0].tensors]
    columns: dict[str, list[pb.Tensor]] = {name: [] for name in names}
    for s in samples:
        if [t.name for t in s.tensors] != names:
            raise DecodeError(
                f"sample {s.sample_id} carries tensors {[t.name for t in s.tensors]}, "
                f"the batch's first sample {names}"
            )
        for t in s.tensors:
            columns[t.name].append(t)
    for name, items in columns.items():
        try:
            batch[name] = _column(name, items)
        except ValueError as exc:  # np.stack of differing shapes
            raise DecodeError(f"tensor {name!r}: samples differ in shape: {exc}") from None
    return batch
