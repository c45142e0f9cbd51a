"""Reusable batch buffers, and the batch object that owns one.

Ownership is explicit. ``EngineClient.batches`` yields ``HostBatch``
objects: dicts of torch tensors that live in a buffer of this pool. The
batch is the caller's until it calls ``batch.release()``; the dict is then
emptied and its buffer goes back to the pool, to be overwritten by a later
batch of the same layout. Tensors taken out of a batch before its release
share that memory, so release only once they are no longer needed (after
the device copy completed: ``trainer/prefetch.py`` does this). A batch
that is never released is garbage-collected like any tensor: nothing is
reused then, and nothing leaks.

With ``pin_memory`` the buffers are page-locked (``torch.empty(...,
pin_memory=True)``), so ``tensor.to("cuda", non_blocking=True)`` is a true
asynchronous copy. Allocating pinned memory is slow (a driver call and
page locking), which is why buffers are reused rather than allocated per
batch.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["BatchBuffers", "HostBatch", "Layout"]

# (name, dtype, shape) of every buffered column: one micro-batch's layout.
Layout = tuple[tuple[str, torch.dtype, tuple[int, ...]], ...]


class HostBatch(dict[str, torch.Tensor]):
    """A micro-batch in host memory (see the module docstring for who owns
    it). ``release()`` hands its buffer back for reuse; it is idempotent,
    and the dict is empty afterwards."""

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        pool: BatchBuffers | None = None,
        layout: Layout | None = None,
        buffer: dict[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__(tensors)
        self._pool = pool
        self._layout = layout
        self._buffer = buffer

    @property
    def pinned(self) -> bool:
        """Whether the buffered tensors are in page-locked memory."""
        return self._pool is not None and self._pool.pin_memory

    def release(self) -> None:
        """Done with this batch: its memory may be reused by a later one."""
        pool, buffer, layout = self._pool, self._buffer, self._layout
        self._pool = self._buffer = self._layout = None
        self.clear()
        if pool is not None and buffer is not None and layout is not None:
            pool.give_back(layout, buffer)


class BatchBuffers:
    """Free buffers by layout, at most ``keep`` per layout (the client's
    prefetch window plus the batches a consumer may hold). Thread-safe:
    batch threads take buffers, the consumer gives them back."""

    def __init__(self, pin_memory: bool, keep: int) -> None:
        self.pin_memory = pin_memory
        self.keep = keep
        self._free: dict[Layout, collections.deque[dict[str, torch.Tensor]]] = {}
        self._lock = threading.Lock()
        self.allocated = 0  # buffers made since start (reuse keeps this small)
        self.reused = 0

    def take(self, layout: Layout) -> dict[str, torch.Tensor]:
        """A buffer of ``layout``: a free one, else a new one."""
        with self._lock:
            free = self._free.get(layout)
            if free:
                self.reused += 1
                return free.pop()
            self.allocated += 1
        return {
            name: torch.empty(shape, dtype=dtype, pin_memory=self.pin_memory)
            for name, dtype, shape in layout
        }

    def give_back(self, layout: Layout, buffer: dict[str, torch.Tensor]) -> None:
        with self._lock:
            free = self._free.setdefault(layout, collections.deque())
            if len(free) < self.keep:
                free.append(buffer)

    def batch(
        self, layout: Layout, buffer: dict[str, torch.Tensor], extra: Iterable[tuple[str, Any]]
    ) -> HostBatch:
        """The ``HostBatch`` over ``buffer`` (plus small unbuffered columns)."""
        return HostBatch({**dict(extra), **buffer}, self, layout, buffer)
