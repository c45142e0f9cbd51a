"""How hard an ``AuditLog`` pushes each line to stable storage.

Every line is handed to the operating system with one ``write`` as soon as
``append`` is called, so a crash of the *process* (SIGKILL, OOM kill) never
loses an appended line. What durability chooses is what a crash of the
*machine* (power loss, kernel panic) may lose:

- ``fsync``: ``append`` returns after ``fsync``; nothing is lost.
- ``interval`` (``"200ms"``, ``"1s"``, ``"interval:200ms"``): a background
  thread calls ``fsync`` every ``interval_s`` seconds when lines were
  written; at most the lines of the last interval are lost.
- ``none``: never ``fsync``; the operating system writes back when it likes
  (typically within 30 s on Linux). For tests and benchmarks.

In every mode a crash never corrupts lines written before: the file is only
ever appended to, and a line torn by the crash (no newline at its end) is
found and cut off when the log is opened again (see ``AuditLog.open``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dataengine.errors import ConfigError

__all__ = ["DURABILITY_MODES", "Durability", "parse_durability"]

DURABILITY_MODES = ("fsync", "interval", "none")
_INTERVAL = re.compile(r"^(?:interval:)?(\d+(?:\.\d+)?)(ms|s)$")


@dataclass(frozen=True)
class Durability:
    """``mode`` (one of ``DURABILITY_MODES``) and, for ``interval``, the
    period of the background ``fsync`` in seconds (``interval_s`` > 0)."""

    mode: str = "fsync"
    interval_s: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in DURABILITY_MODES:
            raise ConfigError(
                "audit.durability", f"mode must be one of {DURABILITY_MODES}, got {self.mode!r}"
            )
        if self.mode == "interval" and not self.interval_s > 0:
            raise ConfigError(
                "audit.durability", f"interval must be > 0 seconds, got {self.interval_s!r}"
            )

    def __str__(self) -> str:
        if self.mode == "interval":
            ms = self.interval_s * 1000
            return f"{ms:g}ms"
        return self.mode


def parse_durability(text: str | Durability, field: str = "audit.durability") -> Durability:
    """``"fsync"``, ``"none"``, or an interval ``"200ms"`` / ``"1.5s"`` /
    ``"interval:200ms"`` (the form of a ``--audit-durability`` flag).
    Raises ``ConfigError`` naming ``field`` for anything else."""
    if isinstance(text, Durability):
        return text
    value = str(text).strip().lower()
    if value in ("fsync", "none"):
        return Durability(value)
    match = _INTERVAL.match(value)
    if match is None:
        raise ConfigError(
            field, f"must be 'fsync', 'none' or an interval like '200ms' or '1s', got {text!r}"
        )
    number = float(match.group(1))
    seconds = number / 1000 if match.group(2) == "ms" else number
    if not seconds > 0:
        raise ConfigError(field, f"interval must be > 0, got {text!r}")
    return Durability("interval", seconds)
