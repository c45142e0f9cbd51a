"""The manifest of a prepared view, and the checks that decide whether a view
may be served.

A prepared view of a dataset for one prefix key lives in
``DATASET_DIR/prepared/<prefix key>/``: one LMDB shard per source shard (same
file names, same sample ids, same boundaries) whose values are prefix values
(``pipeline/stored.py``), and ``manifest.json``, written last::

    {"format": "medstream-prepared", "schema_version": 1,
     "dataset": NAME, "source_fingerprint": SHA256 of the source shards,
     "prefix_key": KEY, "prefix": PipelineSpec.prefix_fields(),
     "created_utc": ..., "num_samples": N, "size_bytes": B,
     "shards": [ShardEntry fields], "failed": [{"sample_id", "kind", "message"}],
     "summary": {...}}

A view is served only when all of these hold (``check_view``): the manifest
parses; its ``prefix_code_version`` is this code's ``PREFIX_CODE_VERSION``;
its key is the one its prefix fields hash to and the directory's name; its
source fingerprint is the dataset's; its shards have the source's boundaries;
each shard file exists with the manifest's size. The SHA-256 of each shard
is checked by whoever reads it whole (an L1 fill, ``dataengine verify``), and
every value carries its own zstd checksum.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dataengine.errors import DataEngineError, DecodeError, NotFoundError
from dataengine.pipeline.spec import PREFIX_CODE_VERSION, prefix_key_of
from dataengine.shards import MANIFEST_NAME, Manifest, ShardEntry

__all__ = [
    "PREPARED_DIR",
    "PREPARED_FORMAT",
    "FailedSample",
    "PreparedManifest",
    "StaleViewError",
    "check_view",
    "find_views",
    "source_fingerprint",
    "view_dir",
]

_LOG = logging.getLogger(__name__)

PREPARED_DIR = "prepared"
PREPARED_FORMAT = "medstream-prepared"
PREPARED_SCHEMA_VERSION = 1


class StaleViewError(DataEngineError):
    """A prepared view that must not be served: it belongs to other source
    shards, other prefix code or another key, or its files are missing or of
    the wrong size. The message says which."""

    kind = "stale_view"


def view_dir(dataset_dir: Path, prefix_key: str) -> Path:
    """Where the view of ``dataset_dir`` for ``prefix_key`` lives."""
    return Path(dataset_dir) / PREPARED_DIR / prefix_key


def source_fingerprint(manifest: Manifest) -> str:
    """SHA-256 (hex) over the dataset's name and its shards' ids, sample
    ranges and checksums: a view made from other shards never matches."""
    body = {
        "name": manifest.name,
        "shards": [
            [s.shard_id, s.first_sample_id, s.num_samples, s.sha256] for s in manifest.shards
        ],
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class FailedSample:
    """A study whose prefix could not be computed; its value in the view
    records the same error, so serving it fails as a fresh decode would."""

    sample_id: int
    kind: str
    message: str


@dataclass(frozen=True)
class PreparedManifest:
    """The table of contents of one prepared view (sizes in bytes)."""

    dataset: str
    source_fingerprint: str
    prefix_key: str
    prefix: dict[str, Any]
    created_utc: str
    shards: tuple[ShardEntry, ...]
    failed: tuple[FailedSample, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    schema_version: int = PREPARED_SCHEMA_VERSION

    @property
    def num_samples(self) -> int:
        return sum(s.num_samples for s in self.shards)

    @property
    def size_bytes(self) -> int:
        return sum(s.size_bytes for s in self.shards)

    @property
    def prefix_code_version(self) -> int:
        return int(self.prefix.get("prefix_code_version", -1))

    def to_json(self) -> str:
        body = {
            "format": PREPARED_FORMAT,
            "schema_version": self.schema_version,
            "dataset": self.dataset,
            "source_fingerprint": self.source_fingerprint,
            "prefix_key": self.prefix_key,
            "prefix": self.prefix,
            "created_utc": self.created_utc,
            "num_samples": self.num_samples,
            "size_bytes": self.size_bytes,
            "shards": [asdict(s) for s in self.shards],
            "failed": [asdict(f) for f in self.failed],
            "summary": self.summary,
        }
        return json.dumps(body, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "prepared manifest") -> PreparedManifest:
        try:
            body = json.loads(text)
            if body.get("format") != PREPARED_FORMAT:
                raise ValueError(f"format is {body.get('format')!r}, not {PREPARED_FORMAT!r}")
            version = int(body["schema_version"])
            if version > PREPARED_SCHEMA_VERSION:
                raise ValueError(
                    f"schema_version {version} is newer than {PREPARED_SCHEMA_VERSION}"
                )
            return cls(
                dataset=str(body["dataset"]),
                source_fingerprint=str(body["source_fingerprint"]),
                prefix_key=str(body["prefix_key"]),
                prefix=dict(body["prefix"]),
                created_utc=str(body["created_utc"]),
                shards=tuple(ShardEntry(**s) for s in body["shards"]),
                failed=tuple(FailedSample(**f) for f in body.get("failed", [])),
                summary=dict(body.get("summary", {})),
                schema_version=version,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError(f"{source}: not a valid prepared-view manifest: {exc}") from exc

    @classmethod
    def load(cls, directory: Path) -> PreparedManifest:
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise NotFoundError(f"{directory}: no {MANIFEST_NAME}; not a finished prepared view")
        return cls.from_json(path.read_text(encoding="utf-8"), source=str(path))


def check_view(directory: Path, dataset: Manifest) -> PreparedManifest:
    """The manifest of the view in ``directory`` if it may serve ``dataset``
    (see the module docstring); else ``StaleViewError`` (or ``DecodeError``
    / ``NotFoundError`` for a missing or unreadable manifest) saying why."""
    directory = Path(directory)
    view = PreparedManifest.load(directory)
    where = f"prepared view {directory}"
    if view.prefix_code_version != PREFIX_CODE_VERSION:
        raise StaleViewError(
            f"{where}: made by prefix code version {view.prefix_code_version}, this engine "
            f"runs {PREFIX_CODE_VERSION}; prepare it again"
        )
    key = prefix_key_of(view.prefix)
    if not view.prefix_key == key == directory.name:
        raise StaleViewError(
            f"{where}: its prefix fields hash to {key}, its manifest says {view.prefix_key} "
            f"and its folder is named {directory.name}"
        )
    fingerprint = source_fingerprint(dataset)
    if view.source_fingerprint != fingerprint:
        raise StaleViewError(
            f"{where}: made from other source shards (fingerprint "
            f"{view.source_fingerprint[:16]}..., the dataset's is {fingerprint[:16]}...)"
        )
    ranges = [(s.shard_id, s.file, s.first_sample_id, s.num_samples) for s in view.shards]
    if ranges != [(s.shard_id, s.file, s.first_sample_id, s.num_samples) for s in dataset.shards]:
        raise StaleViewError(f"{where}: its shards do not have the dataset's sample ranges")
    for s in view.shards:
        path = directory / s.file
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise StaleViewError(f"{where}: {s.file} is missing") from None
        if size != s.size_bytes:
            raise StaleViewError(
                f"{where}: {s.file} has {size} bytes, the manifest says {s.size_bytes}"
            )
    return view


def find_views(dataset_dir: Path, dataset: Manifest) -> dict[str, PreparedManifest]:
    """The servable views of ``dataset_dir`` by prefix key; every view found
    that may not be served is logged with the reason and left out (its
    samples are then decoded instead)."""
    root = Path(dataset_dir) / PREPARED_DIR
    views: dict[str, PreparedManifest] = {}
    if not root.is_dir():
        return views
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            views[directory.name] = check_view(directory, dataset)
        except NotFoundError as exc:  # a prepare run not finished (yet)
            _LOG.info("not serving %s: %s", directory, exc)
        except DataEngineError as exc:
            _LOG.warning("not serving %s: %s", directory, exc)
    return views
