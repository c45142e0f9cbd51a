"""Received samples -> one batch of torch tensors, in their wire dtypes.

Each tensor's bytes are copied once, from where they arrived (the bytes
gRPC handed over, or a shared-memory slot) into the micro-batch's buffer
(``_buffers.py``, pinned when the client pins): ``frame.read_sample``
found them in place without parsing the message, and the copy is a byte
copy (a memcpy whatever the dtype or alignment). bfloat16 travels as 16-bit
patterns and its buffer is a ``torch.bfloat16`` tensor, so nothing is cast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dataengine.client._buffers import BatchBuffers, HostBatch, Layout
from dataengine.errors import DecodeError
from dataengine.frame import SampleView
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["TORCH_DTYPES", "Frame", "assemble"]

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


@dataclass(frozen=True)
class Frame:
    """One good sample as received: ``view`` locates its tensors in
    ``buffer`` (a ``bytes`` from gRPC, a data channel's receive buffer, or a
    shared-memory mapping). ``read_into(offset, dest) -> bytes copied``,
    when set, is how its bytes are copied instead of from ``buffer`` (a
    shared segment: a read of the file, which a truncation cannot turn into
    a SIGBUS as the mapping would)."""

    buffer: Any
    view: SampleView
    read_into: Callable[[int, memoryview], int] | None = None


class _Unreadable(Exception):
    """A frame's bytes could not be copied (its segment was truncated)."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index


def _layout(frames: Sequence[Frame]) -> Layout:
    """The batch's layout; ``DecodeError`` when samples disagree on their
    tensors, dtypes or shapes."""
    first = frames[0].view
    names = [t.name for t in first.tensors]
    for f in frames[1:]:
        v = f.view
        if [t.name for t in v.tensors] != names:
            raise DecodeError(
                f"sample {v.sample_id} carries tensors {[t.name for t in v.tensors]}, "
                f"the batch's first sample {names}"
            )
        for a, b in zip(first.tensors, v.tensors, strict=True):
            if a.code != b.code:
                raise DecodeError(
                    f"tensor {a.name!r}: samples of one batch carry different dtypes "
                    f"({pb.DType.Name(a.code)} and {pb.DType.Name(b.code)})"
                )
            if a.shape != b.shape:
                raise DecodeError(
                    f"tensor {a.name!r}: samples differ in shape: {a.shape} and {b.shape}"
                )
    return tuple((t.name, TORCH_DTYPES[t.code], (len(frames), *t.shape)) for t in first.tensors)


def _bytes_of(tensor: torch.Tensor) -> np.ndarray:
    """A writable uint8 numpy view of a contiguous CPU tensor's memory."""
    flat = tensor.reshape(-1)
    if tensor.dtype == torch.bfloat16:
        flat = flat.view(torch.int16)
    return flat.numpy().view(np.uint8)


def _fill(frames: Sequence[Frame], buffer: dict[str, torch.Tensor], layout: Layout) -> None:
    """Copy every frame's tensors into its row of ``buffer``."""
    for index, (name, _, _) in enumerate(layout):
        row_bytes = frames[0].view.tensors[index].nbytes
        rows = _bytes_of(buffer[name]).reshape(len(frames), row_bytes)
        for i, (row, f) in enumerate(zip(rows, frames, strict=True)):
            t = f.view.tensors[index]
            if f.read_into is None:
                row[:] = np.frombuffer(f.buffer, dtype=np.uint8, count=t.nbytes, offset=t.offset)
            elif f.read_into(t.offset, row.data) != t.nbytes:
                raise _Unreadable(i, f"tensor {t.name!r} of sample {f.view.sample_id}: short read")


def assemble(
    frames: Sequence[Frame], buffers: BatchBuffers
) -> tuple[HostBatch, list[tuple[int, str]]]:
    """``{"sample_id": int64 [B], name: [B, ...] for each tensor}`` of good
    samples, every tensor in the dtype it travelled in, in a buffer of
    ``buffers`` (one byte copy per tensor), and the ``(sample_id, reason)``
    of frames left out because their bytes could no longer be read (a
    shared segment truncated since they arrived). ``DecodeError`` when the
    samples disagree on their tensors, dtypes or shapes."""
    frames = list(frames)
    unreadable: list[tuple[int, str]] = []
    while True:
        ids = torch.tensor([f.view.sample_id for f in frames], dtype=torch.int64)
        if not frames:
            return HostBatch({"sample_id": ids}), unreadable
        layout = _layout(frames)
        buffer = buffers.take(layout)
        try:
            _fill(frames, buffer, layout)
        except _Unreadable as exc:
            buffers.give_back(layout, buffer)
            unreadable.append((frames[exc.index].view.sample_id, str(exc)))
            del frames[exc.index]
            continue
        except BaseException:
            buffers.give_back(layout, buffer)
            raise
        return buffers.batch(layout, buffer, [("sample_id", ids)]), unreadable
