"""Read a serialized ``Sample`` in place: tensors as views of the received
bytes, with no parse copy.

Python protobuf copies every ``bytes`` field out of a parsed message (3.4 MB
for one study's sample), and the parse itself copies again. The engine
writes ``Sample`` messages with a fixed field order (``tensors.
serialize_sample``), but this reader does not rely on it: it walks the
protobuf wire format of ``Sample``, ``Tensor``, ``SampleError`` and
``SharedRef`` field by field, skips unknown fields (and, as protobuf does,
known ones of the wrong wire type), and records where each tensor's
``data`` lies in the buffer. ``TensorView.array`` is then a read-only
``np.frombuffer`` view of those bytes. What it reads is what protobuf's
parse gives (``tests/dataengine/test_frame.py`` checks it, fuzzed).

Every length and offset is checked against the buffer before use, so a
frame whose declared sizes disagree with its bytes raises ``FrameError``
(kind ``data_loss``), never an out-of-bounds read: a varint may not run past
the end or past ten bytes, a field's length may not run past its message, a
tensor's ``data`` must be exactly ``prod(shape) * itemsize`` bytes, a
dimension may not be negative, the dimensions (zeros left out) may not
multiply past 2**40, and an unknown dtype is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataengine.errors import DataLossError
from dataengine.v1 import dataengine_pb2 as pb

__all__ = [
    "FrameError",
    "SampleView",
    "TensorView",
    "peek_sample_id",
    "read_sample",
    "storage_dtype",
]

# How each wire dtype is held in numpy: bfloat16 as its 16-bit patterns.
_STORAGE: dict[int, np.dtype] = {
    pb.FLOAT32: np.dtype("<f4"),
    pb.FLOAT16: np.dtype("<f2"),
    pb.FLOAT64: np.dtype("<f8"),
    pb.INT64: np.dtype("<i8"),
    pb.INT32: np.dtype("<i4"),
    pb.INT16: np.dtype("<i2"),
    pb.UINT8: np.dtype("u1"),
    pb.BOOL: np.dtype("?"),
    pb.BFLOAT16: np.dtype("<u2"),
}
_MAX_DIMS = 32
_MAX_ELEMENTS = 1 << 40  # far above any sample; keeps products exact and small
_U64 = (1 << 64) - 1

# Wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class FrameError(DataLossError):
    """A serialized ``Sample`` that is not what it declares (truncated, a size
    that disagrees with its bytes, an unknown dtype)."""


def storage_dtype(code: int) -> np.dtype:
    """The numpy dtype a wire ``DType`` code is held in (``<u2`` for
    bfloat16); ``FrameError`` for a code with none."""
    dtype = _STORAGE.get(code)
    if dtype is None:
        raise FrameError(f"unknown dtype code {code}")
    return dtype


@dataclass(frozen=True)
class TensorView:
    """Where one tensor's bytes lie in a frame: ``nbytes`` bytes from byte
    ``offset``, holding ``shape`` elements of wire dtype ``code``."""

    name: str
    code: int
    shape: tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def dtype(self) -> np.dtype:
        """The numpy storage dtype (bfloat16: ``<u2`` bit patterns)."""
        return _STORAGE[self.code]

    def array(self, buffer: Any) -> np.ndarray:
        """A view of the tensor in ``buffer`` (the frame it was read from),
        read-only when the buffer is; no copy."""
        count = self.nbytes // self.dtype.itemsize
        flat = np.frombuffer(buffer, dtype=self.dtype, count=count, offset=self.offset)
        return flat.reshape(self.shape)


@dataclass(frozen=True)
class SampleView:
    """A ``Sample`` read in place. ``error`` is ``(kind, message)`` when the
    engine could not produce it; ``shared`` is ``(slot, size)`` when its bytes
    were written into shared memory instead."""

    sample_id: int
    tensors: list[TensorView] = field(default_factory=list)
    error: tuple[str, str] | None = None
    shared: tuple[int, int] | None = None


def _varint(buf: Any, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it. Bits above the 64th
    (a tenth byte above 1) are dropped, as protobuf drops them."""
    value = shift = 0
    for i in range(pos, min(end, pos + 10)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & _U64, i + 1
        shift += 7
    raise FrameError(f"varint at byte {pos} runs past its message or ten bytes")


def _fields(buf: Any, pos: int, end: int, where: str) -> Any:
    """Yield ``(number, wire type, value, start, stop)`` of each field in
    ``buf[pos:end]``: a varint's value, or a length-delimited field's byte
    range (``value`` is then its length)."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise FrameError(f"{where}: field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos, pos
        elif wire == _LEN:
            length, pos = _varint(buf, pos, end)
            stop = pos + length
            if stop > end:
                raise FrameError(
                    f"{where}: field {number} declares {length} bytes, "
                    f"{end - pos} are left in its message"
                )
            yield number, wire, length, pos, stop
            pos = stop
        elif wire in (_I64, _I32):
            stop = pos + (8 if wire == _I64 else 4)
            if stop > end:
                raise FrameError(f"{where}: fixed-size field {number} runs past its message")
            yield number, wire, 0, pos, stop
            pos = stop
        else:
            raise FrameError(f"{where}: field {number} has wire type {wire}")


def _text(buf: Any, start: int, stop: int, where: str) -> str:
    try:
        return bytes(buf[start:stop]).decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(f"{where}: a string is not UTF-8") from None


def _dims(buf: Any, wire: int, value: int, start: int, stop: int) -> list[int]:
    if wire == _VARINT:
        return [value]
    if wire != _LEN:
        raise FrameError("tensor: shape has the wrong wire type")
    out, pos = [], start
    while pos < stop:
        dim, pos = _varint(buf, pos, stop)
        out.append(dim)
    return out


def _tensor(buf: Any, start: int, stop: int, index: int) -> TensorView:
    name, code, shape = "", 0, []
    data: tuple[int, int] | None = None
    where = f"tensor {index}"
    for number, wire, value, a, b in _fields(buf, start, stop, where):
        if number == 1 and wire == _LEN:
            name = _text(buf, a, b, where)
            where = f"tensor {name!r}"
        elif number == 2 and wire == _VARINT:
            code = value
        elif number == 3:
            shape += _dims(buf, wire, value, a, b)
            if len(shape) > _MAX_DIMS:
                raise FrameError(f"{where}: more than {_MAX_DIMS} dimensions")
        elif number == 4 and wire == _LEN:
            data = (a, b - a)
    dtype = _STORAGE.get(code)
    if dtype is None:
        raise FrameError(f"{where}: unknown dtype code {code}")
    # ``span`` (the product of the non-zero dims) is bounded too: a zero-size
    # tensor of shape (0, 2**62) holds no bytes, but numpy (strides) and
    # torch cannot make an array of that shape.
    elements = span = 1
    for dim in shape:
        if dim >= 1 << 63:  # int64 on the wire: a negative dimension
            raise FrameError(f"{where}: negative dimension in shape")
        elements *= dim
        span *= max(dim, 1)
        if span > _MAX_ELEMENTS:
            raise FrameError(f"{where}: shape {shape} is implausibly large")
    offset, nbytes = data if data is not None else (0, 0)
    if nbytes != elements * dtype.itemsize:
        raise FrameError(
            f"{where}: {nbytes} bytes for shape {tuple(shape)} of {dtype.name} "
            f"(expected {elements * dtype.itemsize})"
        )
    return TensorView(name, code, tuple(shape), offset, nbytes)


def _error(buf: Any, start: int, stop: int, kind: str, message: str) -> tuple[str, str]:
    """``SampleError``'s ``(kind, message)`` strings, merged into ``kind``
    and ``message`` (a message field seen twice is merged, as protobuf does)."""
    for number, wire, _, a, b in _fields(buf, start, stop, "sample error"):
        if number == 1 and wire == _LEN:
            kind = _text(buf, a, b, "sample error")
        elif number == 2 and wire == _LEN:
            message = _text(buf, a, b, "sample error")
    return kind, message


def _shared(buf: Any, start: int, stop: int, slot: int, size: int) -> tuple[int, int]:
    """``SharedRef``'s ``(slot, size)``, merged into ``slot`` and ``size``:
    uint32 and uint64 as protobuf reads them (a slot's bits above 32
    dropped)."""
    for number, wire, value, _, _ in _fields(buf, start, stop, "shared reference"):
        if number == 1 and wire == _VARINT:
            slot = value & 0xFFFFFFFF
        elif number == 2 and wire == _VARINT:
            size = value
    return slot, size


def read_sample(buffer: Any, start: int = 0, stop: int | None = None) -> SampleView:
    """Read the ``Sample`` in bytes ``[start, stop)`` of ``buffer``
    (``bytes``, an ``mmap``, a ``memoryview`` or anything else
    ``np.frombuffer`` takes, read by its bytes whatever its item type)
    without copying its tensors; offsets in the result are byte offsets in
    ``buffer``.

    Raises ``FrameError`` when the frame is malformed (see the module
    docstring); its message names the field."""
    # Index bytes, not items: a numpy array's items are numpy integers that
    # wrap when shifted, a wider memoryview's are not bytes at all. The view
    # is released before returning, so an mmap can still be closed.
    with memoryview(buffer) as whole, whole.cast("B") as raw:
        return _read(raw, start, stop)


def _read(buffer: memoryview, start: int, stop: int | None) -> SampleView:
    end = len(buffer) if stop is None else stop
    if not 0 <= start <= end <= len(buffer):
        raise FrameError(f"frame [{start}, {stop}) lies outside a buffer of {len(buffer)} bytes")
    sample_id = 0
    views: list[TensorView] = []
    error: tuple[str, str] | None = None
    shared: tuple[int, int] | None = None
    for number, wire, value, a, b in _fields(buffer, start, end, "sample"):
        if number == 1 and wire == _VARINT:
            sample_id = value
        elif number == 2 and wire == _LEN:
            views.append(_tensor(buffer, a, b, len(views)))
        elif number == 3 and wire == _LEN:
            error = _error(buffer, a, b, *(error or ("", "")))
        elif number == 4 and wire == _LEN:
            shared = _shared(buffer, a, b, *(shared or (0, 0)))
    return SampleView(sample_id, views, error, shared)


def peek_sample_id(buffer: Any) -> int | None:
    """The ``sample_id`` of a frame ``read_sample`` refused, when it can be
    read: field 1, before the first malformed field (the engine writes it
    first). A frame that starts with a well-formed tensor, error or shared
    reference is sample 0 (proto3 leaves a zero id out; the engine then
    writes one of those first); anything else is None: a frame that starts
    with another field is not the engine's, and naming it sample 0 would
    report the wrong sample lost."""
    with memoryview(buffer) as whole, whole.cast("B") as raw:
        try:
            for number, wire, value, _, _ in _fields(raw, 0, len(raw), "sample"):
                if number == 1 and wire == _VARINT:
                    return int(value)
                return 0 if number in (2, 3, 4) and wire == _LEN else None
        except FrameError:
            return None
    return 0
