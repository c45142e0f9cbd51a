"""The served sample in the job's wire dtypes.

``augment`` computes in float32 and stays a pure function of its inputs;
this module converts its output once, at serialization, to the dtypes the
``PipelineSpec`` asks for (``image_dtype``, ``wave_dtype``):

- ``float32``: the bytes ``augment`` produced, unchanged (the default);
- ``bfloat16``: rounded to nearest even (``tensors.bfloat16_bits``);
- ``float16``: numpy's float32 -> float16 cast (round to nearest even);
- ``uint8`` (image only): the [0, 1] window times 255, rounded half to even.

The conversion is deterministic and the same on every host, so batch digests
still depend only on ``(seed, epoch, sample_id)`` and the spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dataengine import tensors
from dataengine.pipeline.spec import PipelineSpec
from dataengine.v1 import dataengine_pb2 as pb

__all__ = ["encode_sample", "image_to_uint8", "sample_parts"]

# Which spec field chooses each tensor's wire dtype.
_DTYPE_FIELD = {"image": "image_dtype", "waveform": "wave_dtype"}


def image_to_uint8(image: np.ndarray) -> np.ndarray:
    """The [0, 1] image times 255, rounded half to even, as uint8 (values
    outside [0, 1] are clipped first)."""
    scaled = np.multiply(image, np.float32(255.0), dtype=np.float32)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    return np.rint(scaled, out=scaled).astype(np.uint8)


def _converted(name: str, array: np.ndarray, dtype: str) -> tuple[Any, np.ndarray]:
    """The wire DType code and the array in that dtype's storage."""
    if dtype == "float32":
        return pb.FLOAT32, array.astype(np.float32, copy=False)
    if dtype == "bfloat16":
        return pb.BFLOAT16, tensors.bfloat16_bits(array)
    if dtype == "float16":
        return pb.FLOAT16, array.astype(np.float16)
    if dtype == "uint8" and name == "image":
        return pb.UINT8, image_to_uint8(array)
    raise ValueError(f"tensor {name!r}: no wire dtype {dtype!r}")  # PipelineSpec validates


def _items(
    arrays: Mapping[str, np.ndarray], spec: PipelineSpec
) -> list[tuple[str, Any, np.ndarray]]:
    out = []
    for name, array in arrays.items():
        if name in _DTYPE_FIELD:
            code, stored = _converted(name, array, getattr(spec, _DTYPE_FIELD[name]))
        else:
            code, stored = tensors.wire_code(name, array), array
        out.append((name, code, stored))
    return out


def encode_sample(sample_id: int, arrays: Mapping[str, np.ndarray], spec: PipelineSpec) -> bytes:
    """The serialized ``Sample`` message that goes on the wire: ``augment``
    output with ``image`` and ``waveform`` in the spec's wire dtypes, the
    rest as they are, in the mapping's order (the bytes protobuf would
    write, with one copy of the tensor data: ``tensors.serialize_sample``)."""
    return tensors.serialize_sample(sample_id, _items(arrays, spec))


def sample_parts(
    sample_id: int, arrays: Mapping[str, np.ndarray], spec: PipelineSpec
) -> list[bytes | memoryview]:
    """``encode_sample``'s bytes as pieces, for writing straight into a
    buffer (a shared-memory slot) with ``tensors.write_parts``: no joined
    copy in between."""
    return tensors.sample_parts(sample_id, _items(arrays, spec))
