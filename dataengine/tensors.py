"""Tensors on the wire: raw little-endian bytes with dtype and shape.

No pickle and no JSON for tensor data. ``encode`` copies an array's bytes
once into the protobuf message; ``decode`` returns a read-only numpy view of
the message's bytes (no copy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from dataengine.errors import DecodeError
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["decode", "decode_all", "encode", "encode_all"]

_TO_PROTO: dict[np.dtype, Any] = {
    np.dtype("<f4"): pb.FLOAT32,
    np.dtype("<f2"): pb.FLOAT16,
    np.dtype("<f8"): pb.FLOAT64,
    np.dtype("<i8"): pb.INT64,
    np.dtype("<i4"): pb.INT32,
    np.dtype("<i2"): pb.INT16,
    np.dtype("u1"): pb.UINT8,
    np.dtype("?"): pb.BOOL,
}
_FROM_PROTO: dict[Any, np.dtype] = {v: k for k, v in _TO_PROTO.items()}


def encode(name: str, array: np.ndarray) -> pb.Tensor:
    """Return ``array`` as a ``Tensor`` message (little-endian, C order)."""
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    code = _TO_PROTO.get(np.dtype(dtype))
    if code is None:
        raise TypeError(f"tensor {name!r}: dtype {array.dtype} has no wire encoding")
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return pb.Tensor(name=name, dtype=code, shape=list(array.shape), data=data)


def decode(tensor: pb.Tensor) -> np.ndarray:
    """Return a read-only array viewing ``tensor.data``.

    Raises ``DecodeError`` when the dtype is unknown or the byte count does not
    match the shape.
    """
    dtype = _FROM_PROTO.get(tensor.dtype)
    if dtype is None:
        raise DecodeError(f"tensor {tensor.name!r}: unknown dtype code {tensor.dtype}")
    shape = tuple(int(d) for d in tensor.shape)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(tensor.data) != expected:
        raise DecodeError(
            f"tensor {tensor.name!r}: {len(tensor.data)} bytes for shape {shape} "
            f"of {dtype.name} (expected {expected})"
        )
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)


def encode_all(arrays: Mapping[str, np.ndarray]) -> list[pb.Tensor]:
    """Encode every ``name -> array`` pair, in the mapping's order."""
    return [encode(name, array) for name, array in arrays.items()]


def decode_all(tensors: Iterable[pb.Tensor]) -> dict[str, np.ndarray]:
    """Decode messages into ``name -> array`` (read-only views)."""
    return {t.name: decode(t) for t in tensors}
