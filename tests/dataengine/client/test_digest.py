"""``batch_digest`` follows its documented definition byte for byte."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from dataengine.client.digest import batch_digest, format_line


def test_digest_is_sha256_over_sorted_names_dtype_shape_and_le_bytes() -> None:
    batch = {
        "sample_id": torch.tensor([7, 3], dtype=torch.int64),
        "image": torch.arange(6, dtype=torch.float32).reshape(2, 3)[:, ::2],  # not contiguous
        "flag": torch.tensor(True),
    }
    expected = hashlib.sha256(
        b"flag\0bool\0\0"
        + b"\x01"
        + b"image\0float32\x002,2\0"
        + np.array([[0, 2], [3, 5]], dtype="<f4").tobytes()
        + b"sample_id\0int64\x002\0"
        + np.array([7, 3], dtype="<i8").tobytes()
    ).hexdigest()
    assert batch_digest(batch) == expected
    assert format_line(12, batch) == f"12 7,3 {expected}"


def test_digest_sees_order_dtype_and_shape() -> None:
    base = {"sample_id": torch.tensor([1, 2]), "x": torch.zeros(2, 4)}
    digest = batch_digest(base)
    assert batch_digest({"sample_id": torch.tensor([2, 1]), "x": base["x"]}) != digest
    assert batch_digest({**base, "x": torch.zeros(2, 4, dtype=torch.float64)}) != digest
    assert batch_digest({**base, "x": torch.zeros(4, 2)}) != digest
    assert batch_digest({**base, "x": torch.zeros(2, 4, dtype=torch.bfloat16)}) != digest
    assert batch_digest(dict(reversed(base.items()))) == digest  # dict order does not count


def test_digest_hashes_compact_dtypes_as_their_raw_bytes() -> None:
    bf16 = torch.tensor([1.0, -2.5, 0.1], dtype=torch.bfloat16)
    half = torch.tensor([1.0, -2.5, 0.1], dtype=torch.float16)
    u8 = torch.tensor([[0, 128, 255]], dtype=torch.uint8)
    batch = {"a": bf16, "b": half, "c": u8}
    expected = hashlib.sha256(
        b"a\0bfloat16\x003\0"
        + bf16.view(torch.int16).numpy().astype("<i2").tobytes()
        + b"b\0float16\x003\0"
        + np.array([1.0, -2.5, 0.1], dtype="<f2").tobytes()
        + b"c\0uint8\x001,3\0"
        + bytes([0, 128, 255])
    ).hexdigest()
    assert batch_digest(batch) == expected
    # The bits are hashed, not the values: float32 holding the same numbers differs.
    assert batch_digest({**batch, "a": bf16.float()}) != expected
