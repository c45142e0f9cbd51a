"""One study record <-> one LMDB value: protobuf, then a zstd frame that
carries its own content checksum (XXH64), so a flipped bit is detected when
the value is decompressed."""

from __future__ import annotations

import threading

import zstandard

from dataengine.errors import DataLossError, DecodeError
from dataengine.v1 import record_pb2

__all__ = ["decode_record", "decompress_value", "encode_record"]

ZSTD_LEVEL = 3
# A record is one protobuf message, and protobuf messages stay below 2 GiB.
MAX_RECORD_BYTES = (1 << 31) - 1
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_local, "compressor", None)
    if c is None:
        c = _local.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "decompressor", None)
    if d is None:
        d = _local.decompressor = zstandard.ZstdDecompressor()
    return d


def encode_record(record: record_pb2.StudyRecord) -> bytes:
    """Serialize (deterministically: map fields in key order, so equal records
    give equal bytes however they were built) and compress a record into an
    LMDB value."""
    return _compressor().compress(record.SerializeToString(deterministic=True))


def decompress_value(value: bytes, *, sample_id: int | None = None) -> bytes:
    """Decompress one LMDB value; a checksum or framing failure is ``DataLossError``.

    The frame header's content size is checked before anything is allocated:
    a flipped bit there could otherwise ask for exabytes (``MemoryError``).
    """
    try:
        size = zstandard.frame_content_size(value)
    except zstandard.ZstdError as exc:
        raise DataLossError(f"record is not a zstd frame: {exc}", sample_id=sample_id) from exc
    if size > MAX_RECORD_BYTES:
        raise DataLossError(
            f"record is corrupt: its zstd frame header declares {size} bytes, more than "
            f"a record can hold ({MAX_RECORD_BYTES})",
            sample_id=sample_id,
        )
    try:
        return _decompressor().decompress(value)
    except zstandard.ZstdError as exc:
        raise DataLossError(f"record fails its zstd checksum: {exc}", sample_id=sample_id) from exc


def decode_record(value: bytes, *, sample_id: int | None = None) -> record_pb2.StudyRecord:
    """Decompress and parse one LMDB value.

    Raises ``DataLossError`` when the bytes fail their checksum and
    ``DecodeError`` when they decompress but do not parse as a record.
    """
    return parse_record(decompress_value(value, sample_id=sample_id), sample_id=sample_id)


def parse_record(raw: bytes, *, sample_id: int | None = None) -> record_pb2.StudyRecord:
    """Parse decompressed record bytes (the second half of ``decode_record``,
    for callers that time decompression apart). ``DecodeError`` if they do not
    parse; ``DataLossError`` if they hold another sample than ``sample_id``."""
    record = record_pb2.StudyRecord()
    try:
        record.ParseFromString(raw)
    except Exception as exc:  # protobuf raises DecodeError of its own module
        raise DecodeError(f"record does not parse: {exc}", sample_id=sample_id) from exc
    if sample_id is not None and record.sample_id != sample_id:
        raise DataLossError(
            f"record holds sample_id {record.sample_id}, stored under {sample_id}",
            sample_id=sample_id,
        )
    return record
