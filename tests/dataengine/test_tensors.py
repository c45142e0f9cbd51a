from __future__ import annotations

import numpy as np
import pytest
import torch

from dataengine import tensors
from dataengine.errors import DecodeError
from dataengine.v1 import dataengine_pb2 as pb


@pytest.mark.parametrize(
    "dtype", ["float32", "float16", "float64", "int64", "int32", "int16", "uint8", "bool"]
)
def test_round_trip_keeps_dtype_shape_and_bytes(dtype: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) % 3).astype(dtype)
    msg = tensors.encode("x", array)
    assert list(msg.shape) == [2, 3, 4]
    back = tensors.decode(msg)
    assert back.dtype == array.dtype
    assert np.array_equal(back, array)


def test_big_endian_input_goes_on_the_wire_little_endian() -> None:
    array = np.array([1.5, -2.0], dtype=">f4")
    msg = tensors.encode("x", array)
    assert msg.data == np.array([1.5, -2.0], dtype="<f4").tobytes()


def test_byte_count_mismatch_is_a_decode_error() -> None:
    msg = tensors.encode("x", np.zeros((2, 2), np.float32))
    msg.shape[:] = [3, 2]
    with pytest.raises(DecodeError, match="expected 24"):
        tensors.decode(msg)


def test_unsupported_dtype_is_refused() -> None:
    with pytest.raises(TypeError, match="no wire encoding"):
        tensors.encode("x", np.zeros(2, np.complex64))


def _f32(bits: list[int]) -> np.ndarray:
    return np.array(bits, dtype=np.uint32).view(np.float32)


def test_bfloat16_rounds_to_nearest_even() -> None:
    halfway_down = 0x3F808000  # exactly between 0x3F80 and 0x3F81: to the even 0x3F80
    halfway_up = 0x3F818000  # between 0x3F81 and 0x3F82: to the even 0x3F82
    above = 0x3F808001  # just past halfway: up
    below = 0x3F807FFF  # just short of halfway: down
    max_finite_f32 = 0x7F7FFFFF  # rounds past bfloat16's largest finite value
    smallest_subnormal = 0x00000001
    bits = tensors.bfloat16_bits(
        _f32([halfway_down, halfway_up, above, below, max_finite_f32, smallest_subnormal])
    )
    assert bits.dtype == np.dtype("<u2")
    assert bits.tolist() == [0x3F80, 0x3F82, 0x3F81, 0x3F80, 0x7F80, 0x0000]


def test_bfloat16_keeps_nan_a_nan_and_infinities_infinite() -> None:
    signalling_nan = 0x7F800001  # adding the rounding bias would make it +inf
    all_ones_nan = 0xFFFFFFFF  # adding the bias would wrap around
    bits = tensors.bfloat16_bits(
        _f32([signalling_nan, all_ones_nan, 0x7FC00000, 0x7F800000, 0xFF800000])
    )
    back = tensors.bfloat16_to_float32(bits)
    assert np.isnan(back[:3]).all()
    assert bits[1] >> 15 == 1  # the sign survives
    assert back[3] == np.inf and back[4] == -np.inf


def test_bfloat16_matches_torch_on_every_finite_value() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.standard_normal(10_000).astype(np.float32) * 1000,
            rng.integers(0, 2**32, 10_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        ]
    )
    values = values[np.isfinite(values) & (np.abs(values) >= np.finfo(np.float32).tiny)]
    ours = tensors.bfloat16_bits(values)
    theirs = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view("<u2")
    assert np.array_equal(ours, theirs)


def test_bfloat16_tensor_round_trip() -> None:
    array = np.array([[1.0, -2.5], [0.1, 3e38]], dtype=np.float32)
    msg = tensors.encode_bfloat16("x", array)
    assert msg.dtype == pb.BFLOAT16 and list(msg.shape) == [2, 2]
    assert len(msg.data) == 8  # half of float32
    bits = tensors.storage_view(msg)
    assert bits.dtype == np.dtype("<u2") and bits.shape == (2, 2)
    widened = tensors.decode(msg)
    assert widened.dtype == np.float32
    expected = torch.from_numpy(array).to(torch.bfloat16).float().numpy()
    assert np.array_equal(widened, expected)
    assert tensors.decode_all([msg])["x"].dtype == np.float32


def test_bfloat16_refuses_non_numbers() -> None:
    with pytest.raises(TypeError, match="bfloat16"):
        tensors.encode_bfloat16("x", np.zeros(2, dtype=bool))


def test_bfloat16_byte_count_is_checked() -> None:
    msg = tensors.encode_bfloat16("x", np.zeros((2, 2), np.float32))
    msg.shape[:] = [4, 2]
    with pytest.raises(DecodeError, match="expected 16"):
        tensors.storage_view(msg)


@pytest.mark.parametrize("sample_id", [0, 1, 300, 2**40 + 7])
def test_serialize_sample_writes_the_bytes_protobuf_writes(sample_id: int) -> None:
    """The one-copy serializer and protobuf's agree byte for byte, so the
    wire (and every batch digest) is unchanged."""
    rng = np.random.default_rng(sample_id)
    arrays = {
        "image": rng.random((3, 5, 7), dtype=np.float32),
        "bits": tensors.bfloat16_bits(rng.random((2, 129), dtype=np.float32)),
        "tokens": rng.integers(0, 300, 200).astype(np.int64),
        "mask": np.array([True, False]),
        "scalar": np.array(3, dtype=np.int32),
        "empty": np.zeros((0, 4), dtype=np.float16),
        "": np.arange(3, dtype=np.uint8),
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "strided": np.arange(20, dtype=np.float32)[::2],
    }
    codes = {n: pb.BFLOAT16 if n == "bits" else tensors.wire_code(n, a) for n, a in arrays.items()}
    ours = tensors.serialize_sample(sample_id, [(n, codes[n], a) for n, a in arrays.items()])
    reference = pb.Sample(
        sample_id=sample_id,
        tensors=[
            pb.Tensor(
                name=n,
                dtype=codes[n],
                shape=list(a.shape),
                data=np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes(),
            )
            for n, a in arrays.items()
        ],
    ).SerializeToString()
    assert ours == reference
    parsed = pb.Sample.FromString(ours)
    np.testing.assert_array_equal(tensors.decode(parsed.tensors[0]), arrays["image"])


def test_prefix_blobs_are_the_bytes_protobuf_writes() -> None:
    """Prepared views and the decode cache hold ``encode_prefix`` blobs: the
    one-copy writer keeps them the bytes of the protobuf message."""
    from dataengine.pipeline.stored import decode_prefix, encode_prefix

    rng = np.random.default_rng(0)
    arrays = {
        "hu": rng.integers(-1024, 3000, (2, 4, 4)).astype(np.int16),
        "wave": rng.standard_normal((12, 9)).astype(np.float16),
        "tokens": np.array([257, 65, 258], dtype=np.int16),
        "present": np.array([1, 0], dtype=np.uint8),
    }
    reference = pb.Sample(sample_id=5, tensors=tensors.encode_all(arrays))
    assert encode_prefix(5, arrays) == reference.SerializeToString(deterministic=True)
    for name, array in decode_prefix(encode_prefix(5, arrays), 5).items():
        np.testing.assert_array_equal(array, arrays[name])
