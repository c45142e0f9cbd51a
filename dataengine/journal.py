"""An append-only, crash-safe JSON-lines journal: what a long run (``pack``,
``prepare``) has durably finished, so the same command can resume it.

Format: one JSON header line ``{"journal": FORMAT, "version": N, ...}``,
then one JSON line per finished unit, each flushed and fsync'd before the
run goes on. A last line without its newline (the run died while appending
it) or a line that does not parse ends what is read: everything before it
is kept. ``create`` writes the header and any kept lines atomically.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from dataengine.shards import atomic_write_bytes

__all__ = ["Journal", "fingerprint_differences", "read_journal"]

_LOG = logging.getLogger(__name__)
T = TypeVar("T")


def fingerprint_differences(
    old: dict[str, Any], new: dict[str, Any], *, ignore: frozenset[str] = frozenset()
) -> list[str]:
    """Names of the fingerprint fields that differ (except ``ignore``)."""
    keys = (old.keys() | new.keys()) - ignore
    return sorted(k for k in keys if old.get(k) != new.get(k))


def read_journal(
    path: Path, fmt: str, version: int, parse: Callable[[dict[str, Any]], T]
) -> tuple[dict[str, Any], list[T]]:
    """The header and the parsed entry lines of the journal at ``path``.
    Raises ``ValueError`` when the header is not a version-``version``
    ``fmt`` header (callers say what to do about it)."""
    lines = Path(path).read_bytes().decode("utf-8", errors="replace").split("\n")
    header = json.loads(lines[0])
    if not isinstance(header, dict) or header.get("journal") != fmt:
        raise ValueError(f"not a {fmt} header")
    if int(header.get("version", -1)) != version:
        raise ValueError(f"not a version-{version} {fmt} header")
    if len(lines) > 1 and lines[-1]:
        _LOG.warning("%s: ignoring a torn last line (the run died while writing it)", path)
    entries: list[T] = []
    for number, line in enumerate(lines[1:-1], start=2):  # lines[-1]: "" or the torn line
        try:
            entries.append(parse(json.loads(line)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            _LOG.warning(
                "%s line %d does not parse (%s); keeping the lines before it", path, number, exc
            )
            break
    return header, entries


class Journal:
    """The journal file at ``path``: ``create`` it, ``append`` lines, ``remove`` it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: Path, header: dict[str, Any], lines: Iterable[str] = ()) -> Journal:
        """Write (atomically, synced) ``header`` and the already-formatted
        ``lines`` (each ending in a newline)."""
        text = json.dumps(header, sort_keys=True) + "\n" + "".join(lines)
        atomic_write_bytes(Path(path), text.encode("utf-8"))
        return cls(path)

    def append(self, line: str) -> None:
        """Append one line (ending in a newline) and fsync it before returning."""
        with open(self.path, "ab") as f:
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
