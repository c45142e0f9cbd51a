"""The on-disk dataset: LMDB shards of zstd-compressed ``StudyRecord``s plus a
JSON manifest. See ``dataengine/shards/README.md``."""

from dataengine.shards._dataset import Dataset
from dataengine.shards._manifest import MANIFEST_NAME, SCHEMA_VERSION, Manifest, ShardEntry
from dataengine.shards._reader import ShardReader
from dataengine.shards._record import (
    decode_record,
    decompress_value,
    encode_record,
    parse_record,
)
from dataengine.shards._writer import ShardWriter, atomic_write_bytes, file_sha256, fsync_dir

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "Dataset",
    "Manifest",
    "ShardEntry",
    "ShardReader",
    "ShardWriter",
    "atomic_write_bytes",
    "decode_record",
    "decompress_value",
    "encode_record",
    "file_sha256",
    "fsync_dir",
    "parse_record",
]
