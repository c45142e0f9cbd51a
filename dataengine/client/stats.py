"""What the client saw of the fleet: counters and a bounded event log.

Benchmarks and operators read ``EngineClient.stats``: for example the time
from an engine's death to the next batch is ``batch_times`` after the
``dead`` event's ``time``. Every time is ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import asdict, dataclass, field

from dataengine.demand import DemandMeter
from dataengine.discovery import DiscoveryStats

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
    cancelled for making no progress), ``unavailable`` (no live engine),
    ``added`` / ``removed`` (discovery found it / no longer lists it:
    removed means drained, not failed), ``refused`` (it serves another
    manifest fingerprint than the fleet: never routed to).
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
    each recent micro-batch was yielded (bounded); ``malformed_frames``:
    received messages that were not a well-formed ``Sample``;
    ``shared_memory_failures`` / ``data_channel_failures``: link frames
    that could not be trusted (the link was dropped and the samples asked
    again inside the gRPC messages). ``engines_refused``: engines refused
    for serving another manifest fingerprint than the fleet's (each time
    one is refused anew).

    ``discovery``: the ``--engines`` source as discovery sees it
    (``DiscoveryStats``: ``source``, ``engines``, ``failures``,
    ``last_error``; ``source`` is "" for a fixed list).

    ``demand``: samples/s the consumer took and its data-wait fraction,
    recent (``DemandMeter``), reported to the engines with every call.

    ``receive``: what receiving cost this process, per transport (``tcp``,
    ``data_channel``, ``shared_memory``): ``samples``, ``bytes`` (message
    bytes plus, for a link, the frame bytes of the slot) and ``cpu_s`` (CPU
    seconds of the threads that read the streams and assemble batches:
    gRPC's reads, frame reading, the copy into the batch buffer).
    ``receive_cost()`` gives it per sample."""

    failovers: int = 0
    hedges: int = 0
    hedged_samples: int = 0
    duplicates_dropped: int = 0
    stalls: int = 0
    engines_lost: int = 0
    engines_revived: int = 0
    batches: int = 0
    malformed_frames: int = 0
    shared_memory_failures: int = 0
    data_channel_failures: int = 0
    engines_refused: int = 0
    discovery: DiscoveryStats = field(default_factory=DiscoveryStats)
    demand: DemandMeter = field(default_factory=DemandMeter)
    receive: dict[str, dict[str, float]] = field(default_factory=dict)
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

    def add_receive(self, transport: str, samples: int, nbytes: int, cpu_s: float) -> None:
        """Count ``samples`` received over ``transport`` (``nbytes``, and
        ``cpu_s`` seconds of CPU spent on them)."""
        with self._lock:
            row = self.receive.setdefault(transport, {"samples": 0, "bytes": 0, "cpu_s": 0.0})
            row["samples"] += samples
            row["bytes"] += nbytes
            row["cpu_s"] += cpu_s

    def receive_cost(self) -> dict[str, dict[str, float]]:
        """Per transport: ``samples``, ``cpu_ms_per_sample`` and
        ``bytes_per_sample`` (what the trainer host pays to receive)."""
        with self._lock:
            rows = {k: dict(v) for k, v in self.receive.items()}
        return {
            k: {
                "samples": v["samples"],
                "cpu_ms_per_sample": 1e3 * v["cpu_s"] / v["samples"] if v["samples"] else 0.0,
                "bytes_per_sample": v["bytes"] / v["samples"] if v["samples"] else 0.0,
            }
            for k, v in rows.items()
        }

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
                "malformed_frames": self.malformed_frames,
                "shared_memory_failures": self.shared_memory_failures,
                "data_channel_failures": self.data_channel_failures,
                "engines_refused": self.engines_refused,
                "discovery": asdict(self.discovery),
                "receive": {k: dict(v) for k, v in self.receive.items()},
                "events": list(self.events),
                "batch_times": list(self.batch_times),
            }
