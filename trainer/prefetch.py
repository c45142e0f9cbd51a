"""Host batches to device inputs, one batch ahead of the consumer.

``DevicePrefetcher`` wraps an iterator of host batches (``Mapping[str,
torch.Tensor]``: the engine client's ``HostBatch``, or any plain dict) and
yields ``DeviceBatch``: the model inputs on the device, the batch's sample
ids (read on the host) and an optional caller value taken when the batch was
pulled (the trainer's data cursor).

Each ``next()`` hands out batch *i*, then pulls batch *i+1* from the source
and starts its copy, so the copy overlaps the consumer's compute on *i*.

- **CUDA device**: the copy of *i+1* runs on one side ``torch.cuda.Stream``
  (``non_blocking=True``; the client pins host batches when
  ``pin_memory``). ``next()`` makes the current stream wait for the copy's
  CUDA event and calls ``record_stream`` on the device tensors, so the
  caching allocator never reuses them while the current stream still reads
  them. No host-side synchronisation on the hot path.
- **Any other device** (the CPU): the same code with no stream and no event;
  the copy is done when ``convert`` returns, and the "device" tensors may be
  the host tensors themselves (``t.to("cpu")`` returns ``t``).

Release rule. A host batch with a ``release()`` method (``HostBatch``: its
buffers are reused for a later batch once released) is released exactly
once, when **both** hold:

1. its copy has completed (on CUDA its event has completed; elsewhere, when
   ``convert`` returned), and
2. if any device tensor may alias it (a device tensor on the same device as
   a host tensor), the consumer has moved past it: it asked for the next
   batch, or closed the prefetcher.

On CUDA nothing aliases, so a host batch goes back as soon as its copy is
done (checked without blocking at each ``next()``; at most
``MAX_UNRELEASED`` copied-but-unreleased host batches are kept before
``next()`` waits for the oldest copy). On the CPU, batch *i* goes back when
the consumer asks for *i+1*: the last batch handed out stays valid until
then. Plain dicts (no ``release``) are simply dropped.

Errors: an exception raised by the source (or ``convert``) while
prefetching *i+1* is kept and raised by the ``next()`` that would have
returned *i+1*, so the consumer still gets *i* first: the same sequence as
iterating the source directly; after it, the prefetcher is exhausted. The
end of the source ends the prefetcher (``StopIteration``) and releases
everything it held.

Not thread-safe: one consumer thread.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch

__all__ = ["MAX_UNRELEASED", "Convert", "DeviceBatch", "DevicePrefetcher"]

MAX_UNRELEASED = 2
"""CUDA: host batches whose copy was issued but not yet seen complete; one
more makes ``next()`` wait (host-side) for the oldest copy, so pinned host
memory held by the prefetcher stays bounded when the GPU falls behind."""

Convert = Callable[[Mapping[str, torch.Tensor], torch.device, bool], dict[str, torch.Tensor]]
"""``convert(host_batch, device, non_blocking)`` -> the model inputs on
``device``. Called on the side stream under CUDA (``non_blocking=True``);
it must not keep references to the host batch."""


@dataclass(frozen=True)
class DeviceBatch:
    """One batch ready for the consumer.

    ``inputs``: ``convert``'s tensors on the device, safe to use on the
    current CUDA stream. ``sample_ids``: the host batch's ``sample_id``
    values, in batch order (empty when it has none). ``state``: the value
    of the prefetcher's ``state()`` callable taken right after this batch
    was pulled from the source (None without one); the trainer's data
    cursor after this batch, not after the one prefetched ahead."""

    inputs: dict[str, torch.Tensor]
    sample_ids: list[int]
    state: Any = None


@dataclass
class _Staged:
    """A batch pulled and copied, not yet handed out. ``host`` is kept only
    when the device tensors may alias it (released when the consumer moves
    on); otherwise the host batch sits in the prefetcher's copy queue."""

    batch: DeviceBatch
    event: torch.cuda.Event | None
    host: Mapping[str, torch.Tensor] | None


def _release(host: Mapping[str, torch.Tensor]) -> None:
    release = getattr(host, "release", None)
    if release is not None:
        release()


def _may_alias(host: Mapping[str, torch.Tensor], inputs: Mapping[str, torch.Tensor]) -> bool:
    """True when some device tensor lives on the same device as some host
    tensor, so ``convert`` may have returned a view of the host buffer."""
    host_devices = {t.device for t in host.values() if isinstance(t, torch.Tensor)}
    return any(t.device in host_devices for t in inputs.values())


class DevicePrefetcher(Iterator[DeviceBatch]):
    """Yield ``DeviceBatch`` for each host batch of ``batches``, copying the
    next one to ``device`` while the consumer computes on the current one.

    ``convert(host_batch, device, non_blocking)`` builds the model inputs
    (see ``Convert``). ``state``, if given, is called right after each pull
    from ``batches``; its value rides with that batch (``DeviceBatch.state``).
    ``close()`` (or leaving the ``with`` block) releases every host batch
    still held and closes ``batches``' iterator if it has ``close`` (a
    generator); after it, the last batch handed out may be reused.
    """

    def __init__(
        self,
        batches: Iterable[Mapping[str, torch.Tensor]],
        device: torch.device | str,
        convert: Convert,
        *,
        state: Callable[[], Any] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self._source = iter(batches)
        self._convert = convert
        self._state = state
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._staged: _Staged | None = None
        self._error: BaseException | None = None
        # host batches whose device tensors may alias them, handed to the consumer
        self._in_use: list[Mapping[str, torch.Tensor]] = []
        # (copy-done event, host batch), in issue order: events complete in order
        self._copying: collections.deque[tuple[torch.cuda.Event, Mapping[str, torch.Tensor]]] = (
            collections.deque()
        )
        self._started = False
        self._closed = False

    # -- iteration -------------------------------------------------------

    def __iter__(self) -> DevicePrefetcher:
        return self

    def __next__(self) -> DeviceBatch:
        if self._closed:
            raise StopIteration
        self._release_in_use()  # the consumer has moved past the last batch
        if not self._started:
            self._started = True
            self._staged = self._stage()  # the first pull raises directly
        elif self._staged is None and self._error is not None:
            error, self._error = self._error, None
            raise error
        current = self._staged
        if current is None:
            self.close()
            raise StopIteration
        self._staged = None
        self._hand_over(current)
        try:
            self._staged = self._stage()
        except Exception as exc:  # raised by the next() that would return it
            self._error = exc
        self._release_copied()
        return current.batch

    def _stage(self) -> _Staged | None:
        """Pull the next host batch and start its copy; None at the end."""
        host = next(self._source, None)
        if host is None:
            return None
        try:
            state = self._state() if self._state is not None else None
            ids = host["sample_id"].tolist() if "sample_id" in host else []
            if self._stream is None:
                inputs = self._convert(host, self.device, False)
                event = None
            else:
                with torch.cuda.stream(self._stream):
                    inputs = self._convert(host, self.device, True)
                    event = torch.cuda.Event()
                    event.record(self._stream)
        except BaseException:
            if self._stream is not None:
                self._stream.synchronize()  # copies issued before the failure read host
            _release(host)
            raise
        aliased = _may_alias(host, inputs)
        if event is not None and not aliased:
            self._copying.append((event, host))
            kept = None
        elif aliased:
            kept = host
        else:  # copied synchronously into separate memory
            _release(host)
            kept = None
        return _Staged(DeviceBatch(inputs, ids, state), event, kept)

    def _hand_over(self, staged: _Staged) -> None:
        """Make ``staged``'s tensors safe on the current stream; track its host."""
        if staged.event is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(staged.event)
            for t in staged.batch.inputs.values():
                if t.is_cuda:
                    t.record_stream(current)
        if staged.host is not None:
            self._in_use.append(staged.host)

    # -- release ---------------------------------------------------------

    def _release_in_use(self) -> None:
        while self._in_use:
            _release(self._in_use.pop(0))

    def _release_copied(self) -> None:
        """Release host batches whose copies are done, without blocking; wait
        for the oldest while more than ``MAX_UNRELEASED`` are outstanding."""
        while self._copying:
            event, host = self._copying[0]
            if not event.query():
                if len(self._copying) <= MAX_UNRELEASED:
                    break
                event.synchronize()
            self._copying.popleft()
            _release(host)

    # -- lifecycle -------------------------------------------------------

    def close(self) -> None:
        """Release every host batch held (waiting for in-flight copies
        first) and close the source iterator. Idempotent."""
        if self._closed:
            return
        self._closed = True
        staged, self._staged = self._staged, None
        if staged is not None and staged.host is not None:
            _release(staged.host)
        self._release_in_use()
        while self._copying:
            event, host = self._copying.popleft()
            event.synchronize()
            _release(host)
        self._error = None
        close = getattr(self._source, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> DevicePrefetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
