"""What a shared-memory link and a data channel share: the lease call and
the slot table.

``hold_lease`` runs an engine's lease call (``AttachSharedMemory`` or
``OpenDataChannel``: one reply, then the call stays open while the engine
holds the link) on a watcher thread, returns the first reply, and reports
the call's end, however it comes, to ``on_end``.

``SlotTable`` hands out a link's slots under tickets: a request's slots get
a fresh ticket; a slot is free again once the client released it and, for
shared memory, once the engine stored that ticket in its done word
(``reusable``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from dataengine.shm import SharedMemoryError

__all__ = ["SlotTable", "hold_lease"]


def hold_lease(call: Any, name: str, timeout_s: float, on_end: Callable[[str], None]) -> Any:
    """The first reply of lease ``call``; a daemon thread ``name`` then
    waits for the call's end and tells ``on_end(reason)``. Raises the
    call's ``grpc.RpcError`` when it failed before answering, and
    ``SharedMemoryError`` when it gave no answer within ``timeout_s``
    seconds or closed without one."""
    answered = threading.Event()
    got: list[Any] = []
    failure: list[BaseException] = []

    def watch() -> None:
        try:
            got.append(next(call))
            answered.set()
            for _ in call:  # the engine sends nothing more; the call's end is the news
                pass
            reason = "the engine ended the lease"
        except grpc.RpcError as exc:
            failure.append(exc)
            reason = f"lease call ended: {exc.code().name}: {exc.details()}"
        except StopIteration:
            reason = "the engine closed the lease without an answer"
        finally:
            answered.set()
        on_end(reason)

    threading.Thread(target=watch, name=name, daemon=True).start()
    if not answered.wait(timeout_s):
        raise SharedMemoryError(f"{name}: no answer within {timeout_s:.0f}s")
    if got:
        return got[0]
    if failure:
        raise failure[0]
    raise SharedMemoryError(f"{name}: the engine closed the lease without an answer")


class SlotTable:
    """``slots`` slots handed out under tickets (see the module docstring).
    Thread-safe."""

    def __init__(self, slots: int, reusable: Callable[[int, int], bool] | None = None) -> None:
        self.slots = slots
        self._reusable = reusable
        self._lock = threading.Lock()
        self._ticket = 0
        self._assigned: dict[int, int] = {}  # slot -> ticket it was handed out with
        self._pending: set[int] = set()  # handed out and not yet released

    def take(self, count: int) -> tuple[int, list[int]] | None:
        """A fresh ticket and ``count`` free slots, or None (too few free)."""
        with self._lock:
            free = []
            for slot in range(self.slots):
                if slot in self._pending:
                    continue
                ticket = self._assigned.get(slot)
                if ticket is not None and self._reusable and not self._reusable(slot, ticket):
                    continue
                free.append(slot)
                if len(free) == count:
                    break
            if len(free) < count:
                return None
            self._ticket += 1
            for slot in free:
                self._assigned[slot] = self._ticket
            self._pending.update(free)
            return self._ticket, free

    def ticket(self, slot: int) -> int | None:
        """The ticket ``slot`` was last handed out with (None: never)."""
        with self._lock:
            return self._assigned.get(slot)

    def holds(self, slot: int, ticket: int) -> bool:
        """``slot`` is handed out now, under ``ticket``."""
        with self._lock:
            return slot in self._pending and self._assigned.get(slot) == ticket

    def release(self, slots: Iterable[int]) -> None:
        """The client is done with these slots."""
        with self._lock:
            self._pending.difference_update(slots)
