"""Tensors on the wire: raw little-endian bytes with dtype and shape.

No pickle and no JSON for tensor data. ``encode`` copies an array's bytes
once into the protobuf message; ``storage_view`` returns a read-only numpy
view of the message's bytes (no copy beyond the ``bytes`` object protobuf
hands out) and ``decode`` does the same for every dtype numpy has.

bfloat16: numpy has no such dtype, so a ``BFLOAT16`` tensor is written from
float32 by ``encode_bfloat16`` (round to nearest even, ``bfloat16_bits``),
its storage view is the raw ``<u2`` bit patterns, and ``decode`` widens it
to float32 (exact, but a copy). Torch users view the bits as
``torch.bfloat16`` instead (``dataengine.client`` does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from dataengine.errors import DecodeError
from dataengine.v1 import dataengine_pb2 as pb

__all__ = [
    "bfloat16_bits",
    "bfloat16_to_float32",
    "decode",
    "decode_all",
    "encode",
    "encode_all",
    "encode_bfloat16",
    "sample_parts",
    "serialize_sample",
    "storage_view",
    "wire_code",
    "write_parts",
]

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
# How each wire dtype is held in numpy: bfloat16 as its 16-bit patterns.
_STORAGE: dict[Any, np.dtype] = {**_FROM_PROTO, pb.BFLOAT16: np.dtype("<u2")}
_QUIET_NAN_BIT = np.uint16(0x0040)


def bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (``<u2``) of ``array`` rounded from float32 to
    nearest, ties to even: what ``torch.Tensor.to(torch.bfloat16)`` gives.
    Values too large round to infinity; a NaN stays a NaN (quieted, sign
    kept) instead of being rounded into an infinity."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = bits >> 16
    rounded &= 1
    rounded += 0x7FFF
    rounded += bits  # wraps only for NaNs, which are replaced below
    rounded >>= 16
    out = rounded.astype("<u2")
    nan = np.isnan(bits.view(np.float32))
    if nan.any():
        out[nan] = (bits[nan] >> 16).astype("<u2") | _QUIET_NAN_BIT
    return out


def bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (exact)."""
    wide = np.asarray(bits, dtype="<u2").astype(np.uint32)
    wide <<= 16
    return wide.view(np.float32)


def wire_code(name: str, array: np.ndarray) -> Any:
    """The ``DType`` code of ``array``'s dtype; ``TypeError`` if it has none."""
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    code = _TO_PROTO.get(np.dtype(dtype))
    if code is None:
        raise TypeError(f"tensor {name!r}: dtype {array.dtype} has no wire encoding")
    return code


def encode(name: str, array: np.ndarray) -> pb.Tensor:
    """Return ``array`` as a ``Tensor`` message (little-endian, C order)."""
    code = wire_code(name, array)
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return pb.Tensor(name=name, dtype=code, shape=list(array.shape), data=data)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, payload_len: int) -> bytes:
    """Tag and length of a length-delimited field."""
    return _varint(number << 3 | 2) + _varint(payload_len)


def sample_parts(
    sample_id: int, items: Iterable[tuple[str, Any, np.ndarray]]
) -> list[bytes | memoryview]:
    """The pieces of a serialized ``Sample`` holding ``(name, DType code,
    array)`` tensors: headers as ``bytes``, tensor data as memoryviews of the
    arrays (made C-contiguous little-endian; already in the wire dtype,
    bfloat16 as its ``<u2`` bit patterns). Joined, they are the bytes
    ``pb.Sample(...).SerializeToString()`` gives."""
    parts: list[bytes | memoryview] = []
    if sample_id:
        parts.append(b"\x08" + _varint(sample_id))  # field 1, varint
    for name, code, array in items:
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        data = np.ascontiguousarray(array, dtype=dtype).reshape(-1).view(np.uint8).data
        head = bytearray()
        if name:
            encoded = name.encode()
            head += _field(1, len(encoded)) + encoded
        if code:
            head += b"\x10" + _varint(int(code))  # field 2, varint
        if array.shape:
            dims = b"".join(_varint(int(d)) for d in array.shape)
            head += _field(3, len(dims)) + dims  # packed repeated int64
        tail = _field(4, data.nbytes) if data.nbytes else b""
        parts += [_field(2, len(head) + len(tail) + data.nbytes), bytes(head), tail, data]
    return parts


def serialize_sample(sample_id: int, items: Iterable[tuple[str, Any, np.ndarray]]) -> bytes:
    """A serialized ``Sample`` (see ``sample_parts``), in the bytes protobuf
    gives, with one copy of the tensor data instead of three (``tobytes``,
    the message field, the serialization)."""
    return b"".join(sample_parts(sample_id, items))


def write_parts(parts: Iterable[bytes | memoryview], out: Any) -> int:
    """Copy ``parts`` back to back into the writable buffer ``out`` (e.g. a
    shared-memory slot) and return the bytes written; ``ValueError`` (and
    nothing written) when they do not fit."""
    items = list(parts)
    size = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in items)
    view = memoryview(out).cast("B")
    if size > view.nbytes:
        raise ValueError(f"{size} bytes do not fit in {view.nbytes}")
    pos = 0
    for part in items:
        n = len(part) if isinstance(part, bytes) else part.nbytes
        view[pos : pos + n] = part
        pos += n
    return size


def encode_bfloat16(name: str, array: np.ndarray) -> pb.Tensor:
    """Return ``array`` as a ``BFLOAT16`` ``Tensor`` (see ``bfloat16_bits``)."""
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"tensor {name!r}: cannot round {array.dtype} to bfloat16")
    data = bfloat16_bits(array).tobytes()
    return pb.Tensor(name=name, dtype=pb.BFLOAT16, shape=list(array.shape), data=data)


def storage_view(tensor: pb.Tensor) -> np.ndarray:
    """Return a read-only array viewing ``tensor.data`` in its storage dtype
    (for ``BFLOAT16``: the ``<u2`` bit patterns).

    Raises ``DecodeError`` when the dtype is unknown or the byte count does not
    match the shape.
    """
    dtype = _STORAGE.get(tensor.dtype)
    if dtype is None:
        raise DecodeError(f"tensor {tensor.name!r}: unknown dtype code {tensor.dtype}")
    shape = tuple(int(d) for d in tensor.shape)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = tensor.data  # each access copies the field out of the message: once
    if len(data) != expected:
        raise DecodeError(
            f"tensor {tensor.name!r}: {len(data)} bytes for shape {shape} "
            f"of {dtype.name} (expected {expected})"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def decode(tensor: pb.Tensor) -> np.ndarray:
    """Return a read-only array viewing ``tensor.data``; a ``BFLOAT16``
    tensor comes back widened to float32 (a new array).

    Raises ``DecodeError`` when the dtype is unknown or the byte count does not
    match the shape.
    """
    view = storage_view(tensor)
    if tensor.dtype == pb.BFLOAT16:
        return bfloat16_to_float32(view)
    return view


def encode_all(arrays: Mapping[str, np.ndarray]) -> list[pb.Tensor]:
    """Encode every ``name -> array`` pair, in the mapping's order."""
    return [encode(name, array) for name, array in arrays.items()]


def decode_all(tensors: Iterable[pb.Tensor]) -> dict[str, np.ndarray]:
    """Decode messages into ``name -> array`` (read-only views)."""
    return {t.name: decode(t) for t in tensors}
