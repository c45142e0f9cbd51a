"""A packed dataset opened for reading: manifest plus lazily opened shards."""

from __future__ import annotations

import bisect
from pathlib import Path

from dataengine.errors import NotFoundError
from dataengine.shards._manifest import Manifest, ShardEntry
from dataengine.shards._reader import ShardReader
from dataengine.shards._record import decode_record
from dataengine.v1 import record_pb2

__all__ = ["Dataset"]


class Dataset:
    """Maps sample ids to shards and reads records. One per process."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.manifest = Manifest.load(self.root)
        self._starts = [s.first_sample_id for s in self.manifest.shards]
        self._readers: dict[int, ShardReader] = {}

    @property
    def name(self) -> str:
        return self.manifest.name

    def __len__(self) -> int:
        return self.manifest.num_samples

    def shard_of(self, sample_id: int) -> ShardEntry:
        if not 0 <= sample_id < len(self):
            raise NotFoundError(
                f"dataset {self.name!r} has samples 0..{len(self) - 1}, not {sample_id}",
                sample_id=sample_id,
            )
        return self.manifest.shards[bisect.bisect_right(self._starts, sample_id) - 1]

    def shard_path(self, shard: ShardEntry) -> Path:
        return self.root / shard.file

    def read_value(self, sample_id: int) -> bytes:
        """Compressed stored bytes of one sample."""
        shard = self.shard_of(sample_id)
        reader = self._readers.get(shard.shard_id)
        if reader is None:
            reader = self._readers[shard.shard_id] = ShardReader(self.shard_path(shard))
        return reader.get(sample_id)

    def read(self, sample_id: int) -> record_pb2.StudyRecord:
        return decode_record(self.read_value(sample_id), sample_id=sample_id)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
