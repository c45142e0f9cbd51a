"""Write one immutable LMDB shard, atomically.

The shard is built under ``<name>.tmp``, synced, checksummed and only then
renamed to its final name, so a crash never leaves a file with a final name
that is not complete.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import lmdb

from dataengine.errors import PackError
from dataengine.shards._manifest import ShardEntry

__all__ = ["ShardWriter", "atomic_write_bytes", "file_sha256", "fsync_dir", "shard_file_name"]

# LMDB reserves address space, not disk: the file grows only as data is written.
_MAP_SIZE = 1 << 40


def shard_file_name(shard_id: int) -> str:
    return f"shard-{shard_id:05d}.lmdb"


def sample_key(sample_id: int) -> bytes:
    """LMDB key of a sample: 8-byte big-endian id, so keys sort numerically."""
    return int(sample_id).to_bytes(8, "big")


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (a rename or a new file in it) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a synced temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class ShardWriter:
    """Collects ``(sample_id, value)`` pairs into one shard file.

    Sample ids must be contiguous from ``first_sample_id``. Use as a context
    manager or call ``close()``; ``abort()`` removes the temporary file.
    """

    def __init__(self, dataset_dir: Path, shard_id: int, first_sample_id: int) -> None:
        self.dataset_dir = Path(dataset_dir)
        self.shard_id = shard_id
        self.first_sample_id = first_sample_id
        self.final_path = self.dataset_dir / shard_file_name(shard_id)
        self.tmp_path = self.final_path.with_name(self.final_path.name + ".tmp")
        for stale in (self.tmp_path, Path(f"{self.tmp_path}-lock")):
            stale.unlink(missing_ok=True)
        self._env: lmdb.Environment | None = lmdb.open(
            str(self.tmp_path), subdir=False, map_size=_MAP_SIZE, lock=False, sync=False
        )
        self._txn = self._env.begin(write=True)
        self.num_samples = 0

    def add(self, sample_id: int, value: bytes) -> None:
        """Append the value of ``sample_id`` (the next id in sequence)."""
        expected = self.first_sample_id + self.num_samples
        if sample_id != expected:
            raise PackError(f"shard {self.shard_id}: got sample {sample_id}, expected {expected}")
        if not self._txn.put(sample_key(sample_id), value, overwrite=False):
            raise PackError(f"shard {self.shard_id}: sample {sample_id} written twice")
        self.num_samples += 1

    def close(self) -> ShardEntry:
        """Commit, sync, checksum and rename; return the manifest entry."""
        if self._env is None:
            raise PackError(f"shard {self.shard_id}: already closed")
        self._txn.commit()
        self._env.sync(True)
        self._env.close()
        self._env = None
        sha = file_sha256(self.tmp_path)
        size = self.tmp_path.stat().st_size
        with open(self.tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp_path, self.final_path)
        fsync_dir(self.dataset_dir)
        return ShardEntry(
            shard_id=self.shard_id,
            file=self.final_path.name,
            first_sample_id=self.first_sample_id,
            num_samples=self.num_samples,
            size_bytes=size,
            sha256=sha,
        )

    def abort(self) -> None:
        if self._env is not None:
            self._txn.abort()
            self._env.close()
            self._env = None
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()
