"""The demand report a client sends with each ``StreamSamples`` call.

One metadata entry, ``medstream-demand: CLIENT_ID SAMPLES_PER_S DATA_WAIT``:
the client's random id (the same at every engine, so ``dataengine fleet``
counts each client once), the samples per second its trainer consumed and
the fraction of its time it waited for data, over the client's recent window
(``client/stats.py``). Engines keep each client's latest report for their
capacity window (``server/usage.py``) and return it in ``GetStats``. A
malformed report is ignored: it is advice, never a reason to fail a call.
"""

from __future__ import annotations

import collections
import math
import secrets
import threading
import time

__all__ = ["DEMAND_METADATA", "DemandMeter", "format_demand", "parse_demand"]

DEMAND_METADATA = "medstream-demand"
_MAX_CLIENT_ID = 64


def format_demand(client: str, samples_per_second: float, data_wait: float) -> str:
    """The metadata value of one report."""
    return f"{client} {samples_per_second:.3f} {data_wait:.4f}"


def parse_demand(value: str) -> tuple[str, float, float] | None:
    """``format_demand``'s text -> ``(client, samples_per_second,
    data_wait)``, or None when malformed (rates must be finite and >= 0, the
    wait within [0, 1], the id 1..64 printable characters)."""
    parts = value.split()
    if len(parts) != 3 or not 0 < len(parts[0]) <= _MAX_CLIENT_ID or not parts[0].isprintable():
        return None
    try:
        rate, wait = float(parts[1]), float(parts[2])
    except ValueError:
        return None
    if not (math.isfinite(rate) and rate >= 0 and math.isfinite(wait) and 0 <= wait <= 1):
        return None
    return parts[0], rate, wait


class DemandMeter:
    """What one client's consumer (the trainer) asked of the fleet over the
    last ``window_s`` seconds: samples per second consumed and the fraction
    of its time it waited for data.

    ``consumed(samples, wait_s, compute_s)`` is called once per batch handed
    to the consumer: ``wait_s`` is how long the consumer waited in the
    client for it, ``compute_s`` how long it was away since the batch before
    (its step). The first batch of a client is not booked (its wait is the
    cold start, and it has no step before it). ``client`` is a random id,
    the same in every engine's report."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.window_s = window_s
        self.client = secrets.token_hex(8)
        self._lock = threading.Lock()
        self._batches: collections.deque[tuple[float, int, float, float]] = collections.deque()

    def consumed(self, samples: int, wait_s: float, compute_s: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._batches.append((now, samples, max(0.0, wait_s), max(0.0, compute_s)))
            while self._batches and now - self._batches[0][0] > self.window_s:
                self._batches.popleft()

    def rate(self) -> tuple[float, float]:
        """``(samples_per_second, data_wait_fraction)`` over the window;
        ``(0.0, 0.0)`` before two batches were consumed."""
        now = time.monotonic()
        with self._lock:
            recent = [b for b in self._batches if now - b[0] <= self.window_s]
        samples = sum(b[1] for b in recent)
        wait = sum(b[2] for b in recent)
        span = wait + sum(b[3] for b in recent)
        if not recent or span <= 0:
            return 0.0, 0.0
        return samples / span, wait / span

    def header(self) -> tuple[str, str]:
        """The metadata entry of the next call."""
        return DEMAND_METADATA, format_demand(self.client, *self.rate())
