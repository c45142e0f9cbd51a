"""Helpers shared by the dataengine tests: a packed dataset written directly
from records, without ``pack_dataset``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dataengine.shards import (
    MANIFEST_NAME,
    Manifest,
    ShardWriter,
    atomic_write_bytes,
    encode_record,
)
from dataengine.v1 import record_pb2


def write_dataset(
    root: Path,
    shards: Sequence[Sequence[record_pb2.StudyRecord]],
    *,
    pack: Mapping[str, Any] | None = None,
) -> Manifest:
    """A dataset in ``root`` (created if missing) with one shard per item of
    ``shards``, each holding those records under their own sample ids, and a
    manifest named "t" with the ``pack`` section given (e.g. a packed
    dataset's, so the same de-identification policy applies)."""
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    first_id = 0
    for shard_id, records in enumerate(shards):
        with ShardWriter(root, shard_id, first_id) as writer:
            for r in records:
                writer.add(r.sample_id, encode_record(r))
            entries.append(writer.close())
        first_id += len(records)
    manifest = Manifest(
        name="t", created_utc="2024-01-01T00:00:00Z", shards=tuple(entries), pack=dict(pack or {})
    )
    atomic_write_bytes(root / MANIFEST_NAME, manifest.to_json().encode("utf-8"))
    return manifest
