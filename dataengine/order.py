"""The deterministic sample order, owned by the client (design brief, section 3).

Pure functions only:
- ``epoch_order(n, seed, epoch)``: a seeded permutation of ``0..n-1``;
- ``rank_slice(...)``: the global positions rank ``r`` of ``W`` takes from one
  global batch: positions ``p`` with ``p % W == r``;
- ``owner_of(shard_id, endpoints)``: rendezvous (highest-random-weight) hashing
  of a shard over live engine endpoints.

The permutation is a sort by a 64-bit keyed hash (splitmix64), implemented
with numpy integer ops, so it is identical on every platform and numpy
version and needs no generator state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

__all__ = ["epoch_order", "global_batch_count", "owner_of", "rank_slice", "ranked_owners"]

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 finaliser on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def epoch_order(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """Sample ids in the order of epoch ``epoch``: a permutation of ``0..n-1``
    (int64), fully determined by ``(seed, epoch)``."""
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    key = _splitmix64(np.array([(seed * 0x100000001B3 + epoch) & 0xFFFFFFFFFFFFFFFF], np.uint64))
    ids = np.arange(num_samples, dtype=np.uint64)
    hashed = _splitmix64(ids ^ key[0])
    # Ties are practically impossible; the stable sort breaks them by id anyway.
    return np.argsort(hashed, kind="stable").astype(np.int64)


def global_batch_count(num_samples: int, batch_size: int, world_size: int, drop_last: bool) -> int:
    """Global batches per epoch. One global batch is ``batch_size * world_size``
    consecutive positions; with ``drop_last`` a final partial one is skipped."""
    size = batch_size * world_size
    return num_samples // size if drop_last else -(-num_samples // size)


def rank_slice(
    order: np.ndarray, start: int, batch_size: int, rank: int, world_size: int
) -> np.ndarray:
    """Sample ids of rank ``rank``'s micro-batch in the global batch starting
    at global position ``start``: positions ``p`` in ``[start, start + B*W)``
    with ``p % W == rank``. Shorter (maybe empty) at the end of an epoch."""
    stop = min(start + batch_size * world_size, len(order))
    first = start + ((rank - start) % world_size)
    return order[first:stop:world_size]


def _weight(endpoint: str, shard_id: int) -> int:
    digest = hashlib.blake2b(f"{endpoint}|{shard_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def ranked_owners(shard_id: int, endpoints: Sequence[str]) -> list[str]:
    """Endpoints ordered by rendezvous weight for ``shard_id``: the first is the
    owner, the next ones take over, in order, if it fails. Removing an endpoint
    moves only the shards it owned."""
    return sorted(endpoints, key=lambda e: (_weight(e, shard_id), e), reverse=True)


def owner_of(shard_id: int, endpoints: Sequence[str]) -> str:
    """The endpoint that owns ``shard_id``."""
    if not endpoints:
        raise ValueError("no endpoints to own shards")
    return max(endpoints, key=lambda e: (_weight(e, shard_id), e))
