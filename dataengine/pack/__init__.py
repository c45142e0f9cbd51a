"""Offline packing: join each study's files, validate, de-identify,
quarantine bad input, and write LMDB+zstd shards plus a manifest, in
parallel. See ``dataengine/pack/README.md``."""

from dataengine.pack._config import PackConfig, PackSummary, QuarantineEntry
from dataengine.pack._pack import QUARANTINE_NAME, pack_dataset
from dataengine.pack._study import classify_file, discover_studies

__all__ = [
    "QUARANTINE_NAME",
    "PackConfig",
    "PackSummary",
    "QuarantineEntry",
    "classify_file",
    "discover_studies",
    "pack_dataset",
]
