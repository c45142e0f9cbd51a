"""Offline packing: join each study's files, validate, de-identify,
quarantine bad input, and write LMDB+zstd shards plus a manifest, in
parallel. See ``dataengine/pack/README.md``."""

from dataengine.pack._config import PackConfig, PackSummary, QuarantineEntry
from dataengine.pack._discover import Discovery, StudySource, discover_sources
from dataengine.pack._pack import JOURNAL_NAME, QUARANTINE_NAME, PackEvent, pack_dataset
from dataengine.pack._study import classify_file, discover_studies

__all__ = [
    "JOURNAL_NAME",
    "QUARANTINE_NAME",
    "Discovery",
    "PackConfig",
    "PackEvent",
    "PackSummary",
    "QuarantineEntry",
    "StudySource",
    "classify_file",
    "discover_sources",
    "discover_studies",
    "pack_dataset",
]
