from __future__ import annotations

import numpy as np
import pytest

from dataengine import tensors
from dataengine.errors import DecodeError


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
