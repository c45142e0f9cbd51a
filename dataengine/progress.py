"""A progress display for long batch runs (``pack``, ``prepare``).

On a terminal (the stream is a TTY) it keeps one line up to date, at most
every ``tty_interval_s`` seconds: items done of the total, the rate and the
estimated time left. Elsewhere (a batch job's log) it logs the same as an
INFO line every ``log_interval_s`` seconds. Both end with one closing line.
The clock and the stream are injectable for tests.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_duration"]

_LOG = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``3725.2`` -> ``"1:02:05"``; ``"?"`` when unknown (not finite or < 0)."""
    if not seconds >= 0 or seconds == float("inf"):
        return "?"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Counts items done out of ``total`` and shows it.

    ``initial``: items done before this run (a resumed run); the rate and
    the ETA count only this run's items. ``enabled=False`` shows nothing.
    ``tty``: force terminal (True) or log (False) mode; None asks the
    stream. ``clock``: monotonic seconds.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        initial: int = 0,
        unit: str = "studies",
        enabled: bool = True,
        stream: TextIO | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        tty_interval_s: float = 0.2,
        log_interval_s: float = 10.0,
    ) -> None:
        self.label = label
        self.total = total
        self.initial = initial
        self.done = initial
        self.unit = unit
        self.enabled = enabled
        self._stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self._stream, "isatty", None)
            tty = bool(isatty()) if isatty is not None else False
        self.tty = tty
        self._clock = clock
        self._interval = tty_interval_s if tty else log_interval_s
        self._start = clock()
        self._last_shown = self._start
        self._closed = False

    @property
    def rate(self) -> float:
        """Items per second of this run so far (0 before the first)."""
        elapsed = self._clock() - self._start
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    def eta_s(self) -> float:
        """Seconds left at the current rate (inf while unknown)."""
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else float("inf")

    def line(self) -> str:
        """The text shown, e.g. ``prepare: 12/48 studies (25%), 3.4 studies/s, ETA 0:00:10``."""
        percent = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"{self.label}: {self.done}/{self.total} {self.unit} ({percent:.0f}%), "
            f"{self.rate:.1f} {self.unit}/s, ETA {format_duration(self.eta_s())}"
        )

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more items done; show them if it is time to."""
        self.done += n
        if not self.enabled or self._closed:
            return
        now = self._clock()
        if now - self._last_shown >= self._interval:
            self._last_shown = now
            self._show()

    def _show(self) -> None:
        if self.tty:
            self._stream.write("\r" + self.line() + "\x1b[K")
            self._stream.flush()
        else:
            _LOG.info("%s", self.line())

    def close(self, *, stopped: bool = False) -> None:
        """Show the closing line (once): items done, elapsed time, rate;
        ``stopped``: the run ended early (an error), say so."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        elapsed = self._clock() - self._start
        verb = "stopped after" if stopped else "done in"
        text = (
            f"{self.label}: {self.done}/{self.total} {self.unit} {verb} "
            f"{format_duration(elapsed)} ({self.rate:.1f} {self.unit}/s)"
        )
        if self.tty:
            self._stream.write("\r" + text + "\x1b[K\n")
            self._stream.flush()
        else:
            _LOG.info("%s", text)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(stopped=exc_type is not None)
