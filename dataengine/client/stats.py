"""What the client saw of the fleet: counters and a bounded event log.

Benchmarks and operators read ``EngineClient.stats``: for example the time
from an engine's death to the next batch is ``batch_times`` after the
``dead`` event's ``time``. Every time is ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

__all__ = ["ClientStats", "FleetEvent"]

_EVENTS = 512


@dataclass(frozen=True)
class FleetEvent:
    """One fleet change the client acted on.

    ``kind`` is one of ``dead`` (an engine stopped being routable: a stream
    failed or stalled, or its health probe did not answer SERVING), ``live``
    (it answered SERVING again, or was added), ``failover`` (ids re-asked
    from another engine after a stream ended without them), ``hedge`` (a
    duplicate request for a slow stream's missing ids), ``stall`` (a stream
    cancelled for making no progress), ``unavailable`` (no live engine).
    ``time`` is ``time.monotonic()``, ``wall_time`` is ``time.time()``."""

    time: float
    wall_time: float
    kind: str
    endpoint: str
    detail: str = ""


@dataclass
class ClientStats:
    """Counters since the client started. Read them from any thread;
    ``snapshot()`` gives a consistent copy.

    ``failovers``: requests re-sent to another engine because a stream ended
    without some of its ids; ``hedges``: duplicate requests sent for slow
    streams; ``hedged_samples``: samples whose first copy came from a hedge;
    ``duplicates_dropped``: second copies discarded (exactly-once);
    ``stalls``: streams cancelled by the stall timeout; ``engines_lost`` /
    ``engines_revived``: live->dead / dead->live transitions;
    ``batches``: micro-batches yielded; ``batch_times``: the monotonic time
    each recent micro-batch was yielded (bounded)."""

    failovers: int = 0
    hedges: int = 0
    hedged_samples: int = 0
    duplicates_dropped: int = 0
    stalls: int = 0
    engines_lost: int = 0
    engines_revived: int = 0
    batches: int = 0
    events: collections.deque[FleetEvent] = field(
        default_factory=lambda: collections.deque(maxlen=_EVENTS)
    )
    batch_times: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_EVENTS)
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def event(self, kind: str, endpoint: str, detail: str = "") -> FleetEvent:
        """Log one fleet event (kept in ``events``, bounded)."""
        item = FleetEvent(time.monotonic(), time.time(), kind, endpoint, detail)
        with self._lock:
            self.events.append(item)
        return item

    def batch_yielded(self) -> None:
        with self._lock:
            self.batches += 1
            self.batch_times.append(time.monotonic())

    def snapshot(self) -> dict[str, object]:
        """Counters, events and batch times as plain values."""
        with self._lock:
            return {
                "failovers": self.failovers,
                "hedges": self.hedges,
                "hedged_samples": self.hedged_samples,
                "duplicates_dropped": self.duplicates_dropped,
                "stalls": self.stalls,
                "engines_lost": self.engines_lost,
                "engines_revived": self.engines_revived,
                "batches": self.batches,
                "events": list(self.events),
                "batch_times": list(self.batch_times),
            }
