"""Read one immutable LMDB shard (read-only, no lock file, safe to open in
many processes at once; open one per process, never share across fork)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lmdb

from dataengine.errors import DataLossError, NotFoundError
from dataengine.shards._writer import sample_key

__all__ = ["ShardReader"]


class ShardReader:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise NotFoundError(f"shard file {self.path} does not exist")
        try:
            self._env = lmdb.open(
                str(self.path),
                subdir=False,
                readonly=True,
                lock=False,
                readahead=False,
                max_readers=512,
            )
        except lmdb.Error as exc:
            raise DataLossError(f"{self.path}: not a readable LMDB file: {exc}") from exc

    def get(self, sample_id: int) -> bytes:
        """The stored (compressed) value of ``sample_id``."""
        try:
            with self._env.begin(buffers=False) as txn:
                value = txn.get(sample_key(sample_id))
        except lmdb.Error as exc:
            raise DataLossError(
                f"{self.path}: LMDB read failed: {exc}", sample_id=sample_id
            ) from exc
        if value is None:
            raise NotFoundError(f"{self.path}: no sample {sample_id}", sample_id=sample_id)
        return bytes(value)

    def items(self) -> Iterator[tuple[int, bytes]]:
        """All ``(sample_id, value)`` pairs in id order."""
        with self._env.begin(buffers=False) as txn:
            for key, value in txn.cursor():
                yield int.from_bytes(key, "big"), bytes(value)

    def close(self) -> None:
        self._env.close()

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
