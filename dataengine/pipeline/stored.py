"""The stored form of the deterministic prefix: compact dtypes and bytes.

Every path that serves a sample (L0 RAM, a prepared view, the decode cache,
a fresh decode) goes through this one form, so which path served a sample
never changes its bytes: ``run_prefix`` ends with ``to_stored``, and the
augmentation suffix reads these dtypes.

Rounding rules (part of the prefix; ``PREFIX_CODE_VERSION`` 3 introduced them):

- ``hu``: Hounsfield units rounded to the nearest integer (half to even) and
  clipped to int16, stored as int16. One HU is far below CT noise (5-20 HU)
  and below the HU window resolution of a uint8 display (400 HU / 256).
  With ``image_voi_lut`` the values are display values in [0, 1]: float16
  (absolute error at most 2^-12, about 2.4e-4).
- ``wave``: millivolts as float16 (relative error at most 2^-11, about
  4.9e-4: under 1 uV on a 2 mV QRS, below the 1-5 uV resolution of clinical
  ECG front ends), clipped to float16's finite range.
- ``tokens``: int16 when every id fits (vocabularies of up to 32767 ids,
  the byte tokenizer's 259 included), else int32.
- ``present``: uint8, unchanged.

Bytes:

- a *prefix blob* is a ``dataengine.v1.Sample`` message holding the sample
  id and the stored arrays (or, for a study that failed to decode, its
  ``SampleError``), serialized deterministically: L0 keeps blobs, workers
  exchange them;
- a *prefix value* is a blob in a zstd frame with a content checksum: the
  LMDB values of a prepared view and the files of the decode cache. A
  flipped bit fails the checksum (``DataLossError``), so a damaged value is
  never served.
"""

from __future__ import annotations

import threading

import numpy as np
import zstandard

from dataengine import tensors
from dataengine.errors import DataEngineError, DataLossError, DecodeError
from dataengine.shards import decompress_value
from dataengine.v1 import dataengine_pb2 as pb

__all__ = [
    "PREFIX_ZSTD_LEVEL",
    "StoredSampleError",
    "compress_blob",
    "decode_prefix",
    "decompress_blob",
    "encode_prefix",
    "encode_prefix_error",
    "to_stored",
    "token_dtype",
]

# zstd level of prefix values: decompression speed does not depend on it, and
# level 3 compresses int16 CT about as well as 9 at a fraction of the cost.
PREFIX_ZSTD_LEVEL = 3
_F16_MAX = float(np.finfo(np.float16).max)
_I16 = np.iinfo(np.int16)
_local = threading.local()


class StoredSampleError(DataEngineError):
    """A stored prefix records that its study failed to decode; ``kind`` is
    the original failure's kind, so serving it gives the same error."""

    def __init__(self, kind: str, message: str) -> None:
        # The stored message already names the sample (as served today).
        super().__init__(message)
        self.kind = kind


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest signed integer type that holds ids ``[0, vocab_size)``
    among the wire's integer types."""
    return np.dtype(np.int16) if vocab_size - 1 <= _I16.max else np.dtype(np.int32)


def to_stored(
    prefix: dict[str, np.ndarray], *, voi_lut: bool, vocab_size: int
) -> dict[str, np.ndarray]:
    """Round prefix arrays to their stored dtypes (see the module docstring)."""
    hu = prefix["hu"]
    if voi_lut:
        image = np.asarray(hu, dtype=np.float16)
    else:
        image = np.clip(np.rint(hu), _I16.min, _I16.max).astype(np.int16)
    wave = np.clip(prefix["wave"], -_F16_MAX, _F16_MAX).astype(np.float16)
    tokens = np.asarray(prefix["tokens"]).astype(token_dtype(vocab_size))
    present = np.asarray(prefix["present"], dtype=np.uint8)
    return {"hu": image, "wave": wave, "tokens": tokens, "present": present}


def encode_prefix(sample_id: int, arrays: dict[str, np.ndarray]) -> bytes:
    """The prefix blob of ``arrays`` (already in stored form)."""
    items = [(name, tensors.wire_code(name, array), array) for name, array in arrays.items()]
    return tensors.serialize_sample(sample_id, items)  # one copy; protobuf's bytes


def encode_prefix_error(sample_id: int, kind: str, message: str) -> bytes:
    """The prefix blob recording that ``sample_id`` failed to decode."""
    msg = pb.Sample(sample_id=sample_id, error=pb.SampleError(kind=kind, message=message))
    return msg.SerializeToString(deterministic=True)


def decode_prefix(blob: bytes, sample_id: int) -> dict[str, np.ndarray]:
    """Arrays of a prefix blob (read-only views of ``blob``).

    Raises ``StoredSampleError`` for a recorded failure, ``DecodeError`` for
    bytes that do not parse, and ``DataLossError`` for another sample's blob."""
    msg = pb.Sample()
    try:
        msg.ParseFromString(blob)
    except Exception as exc:  # protobuf's DecodeError
        raise DecodeError(f"stored prefix does not parse: {exc}", sample_id=sample_id) from exc
    if msg.sample_id != sample_id:
        raise DataLossError(
            f"stored prefix holds sample {msg.sample_id}, not {sample_id}", sample_id=sample_id
        )
    if msg.HasField("error"):
        raise StoredSampleError(msg.error.kind, msg.error.message)
    arrays = tensors.decode_all(msg.tensors)
    missing = {"hu", "wave", "tokens", "present"} - set(arrays)
    if missing:
        raise DecodeError(f"stored prefix lacks {', '.join(sorted(missing))}", sample_id=sample_id)
    return arrays


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_local, "compressor", None)
    if c is None:
        c = _local.compressor = zstandard.ZstdCompressor(
            level=PREFIX_ZSTD_LEVEL, write_checksum=True, write_content_size=True
        )
    return c


def compress_blob(blob: bytes) -> bytes:
    """A prefix value: ``blob`` in a checksummed zstd frame (deterministic)."""
    return _compressor().compress(blob)


def decompress_blob(value: bytes, sample_id: int) -> bytes:
    """The blob of a prefix value; ``DataLossError`` when it fails its checksum."""
    return decompress_value(value, sample_id=sample_id)
