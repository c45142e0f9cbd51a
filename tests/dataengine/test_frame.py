"""``dataengine.frame`` reads a serialized ``Sample`` in place.

What is proved here:

- on real frames (``pipeline.wire.encode_sample`` and
  ``tensors.serialize_sample`` of real arrays in every wire dtype, bfloat16
  bits, zero-size and scalar tensors, sample id 0 and 2**64 - 1, error and
  shared-reference samples) ``read_sample`` finds what protobuf's own parse
  finds: ids, names, dtypes, shapes and the tensors' bytes;
- the same inside a bigger buffer (offsets are absolute), in a memoryview,
  an mmap, a numpy array and a memoryview of another item size;
- a frame protobuf would write differently (fields in another order,
  unknown fields of every wire type, an unpacked shape, two messages
  concatenated, a field with the wrong wire type) is still read as protobuf
  reads it;
- fuzz (seeded, a few thousand frames): every truncation, byte flips,
  length-field edits, insertions and deletions either raise ``FrameError``
  or give a view whose every tensor lies inside the buffer, holds exactly
  ``prod(shape) * itemsize`` bytes and is readable with ``array``; when
  protobuf also parses the frame the two agree; ``peek_sample_id`` never
  raises;
- targeted malformed frames raise ``FrameError`` naming the problem, and
  ``peek_sample_id`` still finds their id where it can be read.
"""

from __future__ import annotations

import mmap
import random
import re
from collections.abc import Callable

import numpy as np
import pytest
from google.protobuf.message import DecodeError as ProtobufDecodeError

from dataengine import tensors
from dataengine.errors import DataLossError
from dataengine.frame import FrameError, SampleView, peek_sample_id, read_sample, storage_dtype
from dataengine.pipeline.spec import PipelineSpec
from dataengine.pipeline.wire import encode_sample
from dataengine.v1 import dataengine_pb2 as pb

U64 = (1 << 64) - 1

# -- a small protobuf writer, independent of the code under test ------------


def varint(value: int) -> bytes:
    """``value`` (0 <= value < 2**70) as a protobuf varint."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def ld(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return key(number, 2) + varint(len(payload)) + payload


def vf(number: int, value: int) -> bytes:
    """A varint field."""
    return key(number, 0) + varint(value)


def tensor_msg(
    name: bytes = b"x",
    code: int = pb.FLOAT32,
    dims: list[int] | None = None,
    data: bytes | None = None,
    *,
    packed: bool = True,
) -> bytes:
    """A ``Tensor`` message's bytes (dims as unsigned varints: pass
    ``2**64 - 1`` for -1)."""
    dims = [2] if dims is None else dims
    out = ld(1, name) + vf(2, code)
    if packed:
        out += ld(3, b"".join(varint(d) for d in dims))
    else:
        out += b"".join(vf(3, d) for d in dims)
    if data is None:
        count = int(np.prod(dims, dtype=object)) if dims else 1
        data = bytes(count * 4)
    return out + ld(4, data)


def sample_msg(sample_id: int, *tensor_bodies: bytes) -> bytes:
    return (vf(1, sample_id) if sample_id else b"") + b"".join(ld(2, t) for t in tensor_bodies)


# -- comparisons ------------------------------------------------------------


def assert_same_as_protobuf(view: SampleView, buf: object, frame: bytes) -> None:
    """``view`` (read from ``buf``) says what protobuf's parse of ``frame`` says."""
    msg = pb.Sample.FromString(frame)
    assert view.sample_id == msg.sample_id
    assert len(view.tensors) == len(msg.tensors)
    for tv, t in zip(view.tensors, msg.tensors, strict=True):
        assert tv.name == t.name
        assert tv.code == t.dtype
        assert tv.shape == tuple(t.shape)
        assert tv.dtype == storage_dtype(t.dtype)
        array = tv.array(buf)
        assert array.shape == tuple(t.shape)
        assert array.dtype == tv.dtype
        assert array.tobytes() == t.data
    if msg.HasField("error"):
        assert view.error == (msg.error.kind, msg.error.message)
    else:
        assert view.error is None
    if msg.HasField("shared"):
        assert view.shared == (msg.shared.slot, msg.shared.size)
    else:
        assert view.shared is None


def every_dtype() -> list[tuple[str, int, np.ndarray]]:
    """Real arrays in every wire dtype (bfloat16 as its bit patterns), a
    zero-size and a scalar tensor, with odd sizes (unaligned offsets)."""
    rng = np.random.default_rng(3)
    values = rng.standard_normal((3, 5)).astype(np.float32) * 100
    values[0, :3] = [np.nan, np.inf, -0.0]
    return [
        ("image", pb.FLOAT32, values),
        ("bf", pb.BFLOAT16, tensors.bfloat16_bits(values)),
        ("half", pb.FLOAT16, values.astype(np.float16)),
        ("double", pb.FLOAT64, values.astype(np.float64)[:, :3]),
        ("long", pb.INT64, rng.integers(-(2**62), 2**62, (7,), dtype=np.int64)),
        ("int", pb.INT32, rng.integers(-(2**31), 2**31 - 1, (2, 3, 1), dtype=np.int32)),
        ("short", pb.INT16, rng.integers(-(2**15), 2**15 - 1, (3,), dtype=np.int16)),
        ("bytes", pb.UINT8, rng.integers(0, 256, (3, 3), dtype=np.uint8)),
        ("mask", pb.BOOL, rng.integers(0, 2, (5,)).astype(bool)),
        ("empty", pb.FLOAT32, np.zeros((0, 4), np.float32)),
        ("empty_ints", pb.INT64, np.zeros((2, 0), np.int64)),
        ("scalar", pb.INT32, np.array(-5, np.int32)),
        ("", pb.UINT8, np.arange(3, dtype=np.uint8)),  # proto3 leaves the empty name out
        ("naïve ✓", pb.INT16, np.arange(2, dtype=np.int16)),
    ]


def wire_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {
        "image": rng.random((2, 9, 7), dtype=np.float32),
        "waveform": rng.standard_normal((3, 11)).astype(np.float32),
        "tokens": rng.integers(0, 30000, (13,), dtype=np.int64),
        "label": np.array([1], np.int64),
    }


def real_frames() -> dict[str, bytes]:
    items = every_dtype()
    error = pb.Sample(sample_id=9, error=pb.SampleError(kind="decode", message="bad pixel data"))
    shared = pb.Sample(sample_id=11, shared=pb.SharedRef(slot=3, size=123456))
    return {
        "every_dtype": tensors.serialize_sample(7, items),
        "sample_0": tensors.serialize_sample(0, items),
        "largest_id": tensors.serialize_sample(U64, items[:2]),
        "no_tensors": tensors.serialize_sample(12, []),
        "empty_frame": b"",
        "error": error.SerializeToString(),
        "error_id_0": pb.Sample(error=pb.SampleError(kind="not_found")).SerializeToString(),
        "shared": shared.SerializeToString(),
        "shared_slot_0": pb.Sample(sample_id=1, shared=pb.SharedRef()).SerializeToString(),
        "wire_float32": encode_sample(3, wire_arrays(), PipelineSpec()),
        "wire_bfloat16": encode_sample(
            4, wire_arrays(), PipelineSpec(image_dtype="bfloat16", wave_dtype="bfloat16")
        ),
        "wire_uint8_float16": encode_sample(
            2**40, wire_arrays(), PipelineSpec(image_dtype="uint8", wave_dtype="float16")
        ),
    }


REAL = real_frames()


def test_real_frames_cover_every_wire_dtype() -> None:
    """The fixtures below are what they claim: protobuf reads every DType
    in them, and bfloat16, uint8 and float16 come from the wire module."""
    codes = {t.dtype for frame in REAL.values() for t in pb.Sample.FromString(frame).tensors}
    assert codes == set(pb.DType.values()) - {pb.DTYPE_UNSPECIFIED}
    bf = pb.Sample.FromString(REAL["wire_bfloat16"]).tensors
    assert [t.dtype for t in bf if t.name in ("image", "waveform")] == [pb.BFLOAT16] * 2


@pytest.mark.parametrize("name", sorted(REAL))
def test_read_sample_agrees_with_protobuf(name: str) -> None:
    frame = REAL[name]
    view = read_sample(frame)
    assert_same_as_protobuf(view, frame, frame)
    for tv in view.tensors:  # views, not copies
        array = tv.array(frame)
        assert not array.flags.writeable and not array.flags.owndata
    assert peek_sample_id(frame) == pb.Sample.FromString(frame).sample_id


def test_serialize_sample_is_protobufs_bytes_and_values_survive() -> None:
    items = every_dtype()
    frame = REAL["every_dtype"]
    built = pb.Sample(
        sample_id=7,
        tensors=[
            pb.Tensor(name=n, dtype=c, shape=list(a.shape), data=np.ascontiguousarray(a).tobytes())
            for n, c, a in items
        ],
    )
    assert frame == built.SerializeToString()
    view = read_sample(frame)
    for (name, _, array), tv in zip(items, view.tensors, strict=True):
        assert tv.name == name
        np.testing.assert_array_equal(tv.array(frame), array.view(tv.dtype))


def embedded(frame: bytes, before: int = 37, after: int = 11) -> tuple[bytearray, int, int]:
    """``frame`` inside a bigger buffer of junk that is itself a valid-looking
    varint stream (so a reader that ignored ``start``/``stop`` would misread)."""
    buf = bytearray(b"\x08\x01" * (before // 2) + b"\x08" * (before % 2))
    start = len(buf)
    buf += frame
    stop = len(buf)
    buf += b"\x12\xff" * after
    return buf, start, stop


@pytest.mark.parametrize("name", ["every_dtype", "sample_0", "wire_bfloat16", "error", "shared"])
def test_offsets_are_absolute_in_a_bigger_buffer(name: str) -> None:
    frame = REAL[name]
    buf, start, stop = embedded(frame)
    view = read_sample(buf, start, stop)
    assert_same_as_protobuf(view, buf, frame)
    alone = read_sample(frame)
    for tv, tv_alone in zip(view.tensors, alone.tensors, strict=True):
        if tv.nbytes:  # a zero-size tensor may have no data field, hence no place
            assert tv.offset == tv_alone.offset + start
            assert start <= tv.offset and tv.offset + tv.nbytes <= stop
    as_view = memoryview(bytes(buf))
    assert_same_as_protobuf(read_sample(as_view, start, stop), as_view, frame)
    assert_same_as_protobuf(read_sample(memoryview(frame)), memoryview(frame), frame)


def test_an_mmap_is_read_in_place_and_can_be_closed_after() -> None:
    frame = REAL["every_dtype"]
    buf, start, stop = embedded(frame, before=4096 + 5)
    mm = mmap.mmap(-1, len(buf))
    mm[:] = bytes(buf)
    view = read_sample(mm, start, stop)
    assert_same_as_protobuf(view, mm, frame)
    image = view.tensors[0].array(mm)
    mm[view.tensors[0].offset] ^= 0xFF  # a view of the mapping, not a copy
    assert image.tobytes() != pb.Sample.FromString(frame).tensors[0].data
    del image
    mm.close()  # reading left no buffer export behind (close would raise BufferError)


def test_a_numpy_array_or_a_wide_memoryview_is_read_as_bytes() -> None:
    """``read_sample`` takes what ``np.frombuffer`` takes: a uint8 array, or a
    memoryview whose items are wider than a byte, is read by its bytes."""
    frame = REAL["every_dtype"] + bytes(-len(REAL["every_dtype"]) % 8)
    as_array = np.frombuffer(frame, np.uint8)
    assert_same_as_protobuf(read_sample(as_array), as_array, frame)
    wide = memoryview(np.frombuffer(frame, np.float64))
    view = read_sample(wide, 0, len(REAL["every_dtype"]))
    assert_same_as_protobuf(view, wide, REAL["every_dtype"])
    assert peek_sample_id(as_array) == 7


# -- frames protobuf reads that the engine does not write ---------------------


def _other_order_frame() -> tuple[bytes, bytes]:
    """A frame with every field out of order, unknown fields of each wire
    type at both levels and an unpacked shape; and protobuf's own bytes of
    the same message."""
    data = np.arange(6, dtype="<i2").tobytes()
    unknown = (
        vf(15, 300)
        + key(16, 1)
        + b"\x01" * 8
        + ld(17, b"\xff\x00 junk")
        + key(18, 5)
        + b"\x02" * 4
        + vf(2**29 - 1, 1)
    )
    body = ld(4, data) + unknown + vf(3, 2) + vf(3, 3) + vf(2, pb.INT16) + ld(1, b"shape")
    second = ld(4, b"\x07") + ld(3, varint(1)) + vf(2, pb.UINT8) + ld(1, b"one")
    frame = unknown + ld(2, body) + vf(1, 5) + ld(2, second) + unknown + vf(1, 42)
    return frame, pb.Sample.FromString(frame).SerializeToString()


def test_fields_in_another_order_unknown_fields_and_an_unpacked_shape() -> None:
    frame, canonical = _other_order_frame()
    msg = pb.Sample.FromString(canonical)
    assert msg.sample_id == 42  # the last of two ids wins, as in protobuf
    assert [(t.name, list(t.shape)) for t in msg.tensors] == [("shape", [2, 3]), ("one", [1])]
    view = read_sample(frame)
    assert_same_as_protobuf(view, frame, frame)
    assert view.tensors[0].array(frame).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_two_concatenated_frames_read_as_protobuf_merges_them() -> None:
    a = tensors.serialize_sample(3, every_dtype()[:2])
    b = tensors.serialize_sample(8, every_dtype()[2:4])
    frame = a + b
    assert_same_as_protobuf(read_sample(frame), frame, frame)


def test_an_error_or_a_reference_seen_twice_is_merged_as_protobuf_merges_it() -> None:
    frame = (
        vf(1, 4)
        + ld(3, ld(1, b"decode"))
        + ld(4, vf(1, 2**32 + 7))  # a uint32 slot: protobuf keeps the low 32 bits
        + ld(3, ld(2, b"second half"))
        + ld(4, vf(2, 99))
    )
    view = read_sample(frame)
    assert view.error == ("decode", "second half") and view.shared == (7, 99)
    assert_same_as_protobuf(view, frame, frame)


def test_a_field_with_the_wrong_wire_type_is_ignored_as_protobuf_ignores_it() -> None:
    """Protobuf keeps a known field number with the wrong wire type as an
    unknown field; so does the reader, at every level."""
    frame = (
        vf(1, 6)
        + ld(1, b"not an id")
        + vf(2, 1)  # tensors as a varint
        + ld(2, tensor_msg(dims=[2], data=bytes(8)) + vf(1, 5) + ld(2, b"?") + vf(4, 1))
        + ld(3, vf(1, 7) + ld(2, b"message") + vf(2, 1))  # error.kind as a varint
        + ld(4, ld(1, b"12") + vf(2, 99) + ld(2, b"x"))  # shared.slot as bytes
    )
    msg = pb.Sample.FromString(frame)
    assert (msg.sample_id, msg.error.kind, msg.error.message) == (6, "", "message")
    assert (msg.shared.slot, msg.shared.size) == (0, 99)
    assert_same_as_protobuf(read_sample(frame), frame, frame)


def test_varints_are_64_bits_as_in_protobuf() -> None:
    """A 10-byte varint carries bits above 64 that protobuf drops; the id
    read is protobuf's, never a number no uint64 can hold."""
    frame = key(1, 0) + b"\xff" * 9 + b"\x7f"
    assert pb.Sample.FromString(frame).sample_id == U64
    assert read_sample(frame).sample_id == U64
    assert peek_sample_id(frame) == U64


# -- targeted malformed frames ------------------------------------------------


def _long_data() -> bytes:
    """Tensor data whose length field says 100 bytes; 8 follow."""
    body = ld(1, b"x") + vf(2, pb.FLOAT32) + ld(3, varint(2)) + key(4, 2) + varint(100) + bytes(8)
    return vf(1, 21) + ld(2, body)


def _outer_too_long() -> bytes:
    inner = tensor_msg(dims=[2], data=bytes(8))
    return vf(1, 21) + key(2, 2) + varint(len(inner) + 5) + inner


MALFORMED: dict[str, tuple[bytes, str, int | None]] = {
    # name: (frame, message the FrameError must contain, peek_sample_id)
    "data length past the frame": (_long_data(), "declares 100 bytes", 21),
    "tensor length past the frame": (_outer_too_long(), "field 2 declares", 21),
    "data shorter than the shape": (
        sample_msg(21, tensor_msg(dims=[3, 2], data=bytes(20))),
        "20 bytes for shape (3, 2) of float32 (expected 24)",
        21,
    ),
    "data longer than the shape": (
        sample_msg(21, tensor_msg(code=pb.UINT8, dims=[3], data=bytes(4))),
        "expected 3",
        21,
    ),
    "shape without data": (sample_msg(21, tensor_msg(dims=[2], data=b"")), "expected 8", 21),
    "negative dimension": (
        sample_msg(21, tensor_msg(dims=[U64, 2], data=bytes(8))),
        "negative dimension",
        21,
    ),
    "negative times negative": (
        sample_msg(21, tensor_msg(dims=[U64, U64], data=bytes(4))),
        "negative dimension",
        21,
    ),
    "dims whose product overflows int64": (
        sample_msg(21, tensor_msg(dims=[2**32, 2**32, 2**32], data=b"")),
        "implausibly large",
        21,
    ),
    "huge dims next to a zero": (
        sample_msg(21, tensor_msg(dims=[0, 2**62, 2**62], data=b"")),
        "implausibly large",
        21,
    ),
    "one huge dim of a zero-size tensor": (
        sample_msg(21, tensor_msg(code=pb.FLOAT64, dims=[2**61, 0], data=b"")),
        "implausibly large",
        21,
    ),
    "too many dims": (
        sample_msg(21, tensor_msg(code=pb.UINT8, dims=[1] * 33, data=b"\x00")),
        "more than 32 dimensions",
        21,
    ),
    "unknown dtype code": (
        sample_msg(21, tensor_msg(code=99, dims=[2], data=bytes(8))),
        "unknown dtype code 99",
        21,
    ),
    "unspecified dtype": (
        sample_msg(21, tensor_msg(code=0, dims=[2], data=bytes(8))),
        "unknown dtype code 0",
        21,
    ),
    "11-byte varint": (vf(1, 21) + key(2, 0) + b"\xff" * 10 + b"\x01", "ten bytes", 21),
    "varint cut by the frame's end": (vf(1, 21) + key(3, 0) + b"\x80\x80", "runs past", 21),
    "varint cut by its message's end": (
        vf(1, 21) + ld(2, ld(1, b"x") + key(2, 0) + b"\x81"),
        "runs past",
        21,
    ),
    "field number 0": (vf(1, 21) + b"\x00\x01", "field number 0", 21),
    "field number 0 in a tensor": (sample_msg(21, b"\x02\x00"), "field number 0", 21),
    "invalid utf-8 name": (
        sample_msg(21, tensor_msg(name=b"\xff\xfeimage", dims=[1], data=bytes(4))),
        "not UTF-8",
        21,
    ),
    "invalid utf-8 error kind": (
        vf(1, 21) + ld(3, ld(1, b"\xc3(")),
        "not UTF-8",
        21,
    ),
    "fixed64 field past the end": (vf(1, 21) + key(9, 1) + bytes(7), "runs past", 21),
    "fixed32 field past the end": (vf(1, 21) + key(9, 5) + bytes(3), "runs past", 21),
    "id unreadable": (key(1, 0) + b"\x80" * 3, "runs past", None),
    "sample 0 with a bad tensor": (
        sample_msg(0, tensor_msg(dims=[3], data=bytes(4))),
        "expected 12",
        0,
    ),
    "sample 0 with a tensor past the end": (key(2, 2) + varint(50) + bytes(10), "declares", None),
    "sample 0 with a bad error": (ld(3, ld(1, b"\xff")), "not UTF-8", 0),
    "an id of the wrong wire type first": (
        ld(1, b"7") + sample_msg(0, tensor_msg(dims=[3], data=b"")),
        "expected 12",
        None,
    ),
    "an unknown field first": (
        vf(9, 1) + sample_msg(0, tensor_msg(dims=[3], data=b"")),
        "expected 12",
        None,
    ),
}
for _wire in (3, 4, 6, 7):
    MALFORMED[f"wire type {_wire}"] = (vf(1, 21) + key(5, _wire) + b"\x00", "wire type", 21)
    MALFORMED[f"wire type {_wire} in a tensor"] = (
        sample_msg(21, key(5, _wire) + b"\x00"),
        "wire type",
        21,
    )


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_frames_raise_frame_error_naming_the_problem(name: str) -> None:
    frame, message, sid = MALFORMED[name]
    with pytest.raises(FrameError, match=re.escape(message)) as info:
        read_sample(frame)
    assert isinstance(info.value, DataLossError) and info.value.kind == "data_loss"
    assert peek_sample_id(frame) == sid
    buf, start, stop = embedded(frame)  # no read beyond ``stop`` rescues it
    with pytest.raises(FrameError, match=re.escape(message)):
        read_sample(buf, start, stop)


def test_a_shared_reference_is_read_whole() -> None:
    frame = pb.Sample(
        sample_id=5, shared=pb.SharedRef(slot=2**32 - 1, size=U64)
    ).SerializeToString()
    assert read_sample(frame).shared == (2**32 - 1, U64)


@pytest.mark.parametrize(
    ("start", "stop"), [(-1, None), (5, 4), (0, 10_000), (10_000, None), (3, -1)]
)
def test_a_range_outside_the_buffer_is_refused(start: int, stop: int | None) -> None:
    with pytest.raises(FrameError, match="outside a buffer"):
        read_sample(REAL["every_dtype"], start, stop)


def test_storage_dtype_refuses_an_unknown_code() -> None:
    assert storage_dtype(pb.BFLOAT16) == np.dtype("<u2")
    with pytest.raises(FrameError, match="unknown dtype code 42"):
        storage_dtype(42)


# -- fuzz ---------------------------------------------------------------------


def check_frame(buf: bytes, seen: dict[str, int]) -> None:
    """The property: ``FrameError`` (and nothing else), or a view whose every
    tensor lies inside the buffer and can be read; equal to protobuf's parse
    when protobuf parses it too. ``peek_sample_id`` never raises."""
    peeked = peek_sample_id(buf)
    assert peeked is None or 0 <= peeked <= U64
    try:
        view = read_sample(buf)
    except FrameError:
        seen["refused"] += 1
        return
    seen["read"] += 1
    assert 0 <= view.sample_id <= U64
    for tv in view.tensors:
        assert tv.offset >= 0 and tv.offset + tv.nbytes <= len(buf)
        assert all(d >= 0 for d in tv.shape)
        assert tv.nbytes == int(np.prod(tv.shape, dtype=object)) * tv.dtype.itemsize
        array = tv.array(buf)
        assert array.shape == tv.shape and array.nbytes == tv.nbytes
    try:
        msg = pb.Sample.FromString(buf)
    except ProtobufDecodeError:
        seen["protobuf refused"] += 1
        return
    if msg.sample_id == view.sample_id and len(msg.tensors) == len(view.tensors):
        seen["agreed"] += 1
    assert_same_as_protobuf(view, buf, buf)


def _fuzz_seeds() -> list[bytes]:
    small = [
        ("img", pb.FLOAT32, np.arange(6, dtype=np.float32).reshape(2, 3)),
        ("bf", pb.BFLOAT16, tensors.bfloat16_bits(np.array([1.5, -2.0], np.float32))),
        ("u8", pb.UINT8, np.arange(5, dtype=np.uint8)),
        ("z", pb.INT64, np.zeros((0, 2), np.int64)),
    ]
    return [
        tensors.serialize_sample(300, small),
        tensors.serialize_sample(0, small[2:]),
        REAL["error"],
        REAL["shared"],
        _other_order_frame()[0],
    ]


def _length_fields(frame: bytes) -> list[int]:
    """Positions of the length varints of ``frame``'s length-delimited fields
    (at every nesting level protobuf knows of)."""
    out: list[int] = []

    def walk(pos: int, end: int, depth: int) -> None:
        while pos < end:
            k, pos = _read_varint(frame, pos)
            wire = k & 7
            if wire == 0:
                _, pos = _read_varint(frame, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                out.append(pos)
                n, pos = _read_varint(frame, pos)
                if depth == 0 and k >> 3 in (2, 3, 4):
                    walk(pos, pos + n, 1)
                pos += n
            else:
                return

    walk(0, len(frame), 0)
    return out


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _mutations(seed: int, frame: bytes) -> list[bytes]:
    rng = random.Random(seed)
    out: list[bytes] = [frame[:n] for n in range(len(frame))]  # every truncation
    lengths = _length_fields(frame)

    def flip(b: bytearray) -> None:
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)

    def overwrite(b: bytearray) -> None:
        b[rng.randrange(len(b))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])

    def edit_length(b: bytearray) -> None:
        pos = rng.choice(lengths)
        old, after = _read_varint(bytes(b), pos)
        new = max(0, old + rng.choice([-9, -4, -1, 1, 2, 4, 8, 1 << 20, 1 << 62]))
        b[pos:after] = varint(new)

    def insert(b: bytearray) -> None:
        pos = rng.randrange(len(b) + 1)
        b[pos:pos] = rng.choice(
            [bytes([rng.randrange(256)]), varint(rng.randrange(1 << 64)), b"\x80" * 10, b"\x12"]
        )

    def delete(b: bytearray) -> None:
        pos = rng.randrange(len(b))
        del b[pos : pos + rng.randrange(1, 4)]

    mutators: list[Callable[[bytearray], None]] = [flip, overwrite, edit_length, insert, delete]
    for mutate in mutators:
        for _ in range(400):
            b = bytearray(frame)
            for _ in range(rng.choice([1, 1, 2, 3])):
                if b:
                    mutate(b)
            out.append(bytes(b))
    return out


def test_fuzz_every_frame_is_refused_or_read_within_its_bytes() -> None:
    seen = {"refused": 0, "read": 0, "protobuf refused": 0, "agreed": 0}
    cases = 0
    for seed, frame in enumerate(_fuzz_seeds()):
        for buf in _mutations(seed, frame):
            check_frame(buf, seen)
            cases += 1
    assert cases > 8000
    # The mutations reached both outcomes, and many agreed with protobuf.
    assert seen["refused"] > 3000 and seen["read"] > 1000 and seen["agreed"] > 1000, seen


def test_fuzz_random_bytes() -> None:
    rng = random.Random(11)
    seen = {"refused": 0, "read": 0, "protobuf refused": 0, "agreed": 0}
    for _ in range(1500):
        check_frame(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))), seen)
    assert seen["refused"] and seen["read"], seen
