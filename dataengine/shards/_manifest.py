"""``manifest.json``: the table of contents of a dataset directory.

A dataset is exactly what its manifest lists. Shards not named there (for
example left behind by a crash) are ignored, and the manifest is written last,
atomically, so a reader never sees a half-written dataset.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dataengine.errors import DecodeError, NotFoundError

__all__ = ["MANIFEST_NAME", "SCHEMA_VERSION", "Manifest", "ShardEntry"]

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
FORMAT_NAME = "medstream-dataset"


@dataclass(frozen=True)
class ShardEntry:
    """One immutable shard: samples ``[first_sample_id, first_sample_id + num_samples)``."""

    shard_id: int
    file: str
    first_sample_id: int
    num_samples: int
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """Dataset table of contents. ``pack`` holds the pack summary (counts of
    studies decoded and quarantined by reason, redactions by type)."""

    name: str
    created_utc: str
    shards: tuple[ShardEntry, ...]
    pack: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def num_samples(self) -> int:
        return sum(s.num_samples for s in self.shards)

    @property
    def size_bytes(self) -> int:
        return sum(s.size_bytes for s in self.shards)

    def to_json(self) -> str:
        body = {
            "format": FORMAT_NAME,
            "schema_version": self.schema_version,
            "name": self.name,
            "created_utc": self.created_utc,
            "num_samples": self.num_samples,
            "size_bytes": self.size_bytes,
            "shards": [asdict(s) for s in self.shards],
            "pack": self.pack,
        }
        return json.dumps(body, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "manifest") -> Manifest:
        try:
            body = json.loads(text)
            if body.get("format") != FORMAT_NAME:
                raise ValueError(f"format is {body.get('format')!r}, not {FORMAT_NAME!r}")
            version = int(body["schema_version"])
            if version > SCHEMA_VERSION:
                raise ValueError(f"schema_version {version} is newer than {SCHEMA_VERSION}")
            shards = tuple(ShardEntry(**s) for s in body["shards"])
            manifest = cls(
                name=str(body["name"]),
                created_utc=str(body["created_utc"]),
                shards=shards,
                pack=dict(body.get("pack", {})),
                schema_version=version,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError(f"{source}: not a valid dataset manifest: {exc}") from exc
        expected = 0
        for s in manifest.shards:
            if s.first_sample_id != expected:
                raise DecodeError(
                    f"{source}: shard {s.shard_id} starts at sample {s.first_sample_id}, "
                    f"expected {expected} (sample ids must be contiguous)"
                )
            expected += s.num_samples
        return manifest

    @classmethod
    def load(cls, dataset_dir: Path) -> Manifest:
        path = Path(dataset_dir) / MANIFEST_NAME
        if not path.is_file():
            raise NotFoundError(f"{dataset_dir}: no {MANIFEST_NAME}; is this a packed dataset?")
        return cls.from_json(path.read_text(encoding="utf-8"), source=str(path))
