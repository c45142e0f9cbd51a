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
