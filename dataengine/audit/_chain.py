"""Reading a chain back: every line checked against the one before it.

``scan_chain`` walks a log line by line (streaming: memory does not grow with
the log) and stops at the first line that breaks the chain, saying which
(1-based line number) and why. ``AuditLog.open`` uses it to find the head to
continue from; ``verify_chain`` to judge a log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dataengine.audit._canonical import GENESIS, line_hash
from dataengine.errors import DataEngineError

__all__ = ["AuditError", "ChainScan", "scan_chain", "scan_file"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class AuditError(DataEngineError):
    """An audit log or seal that cannot be used: a broken chain on open, a log
    held by another writer, a bad key file or seal file."""


@dataclass
class ChainScan:
    """What ``scan_chain`` found.

    ``lines``: complete lines that chain correctly (the prefix that is good);
    ``head_seq`` / ``head_hash``: the last of those (0 and ``GENESIS`` when
    none); ``good_bytes``: the length of that prefix in bytes;
    ``bad_line`` / ``reason``: the first line that breaks the chain (1-based)
    and why, or None; ``torn``: the bytes of a last line without its newline
    (a crash during a write), else None (a torn line is also ``bad_line``);
    ``hashes``: the hash at each seq asked for in ``want`` that was reached.
    """

    lines: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    good_bytes: int = 0
    bad_line: int | None = None
    reason: str | None = None
    torn: bytes | None = None
    hashes: dict[int, str] = field(default_factory=dict)
    head_time: str | None = None

    @property
    def ok(self) -> bool:
        return self.bad_line is None


def _field_problem(line: dict[str, Any]) -> str | None:
    seq = line.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return "field 'seq' is missing or not an integer >= 1"
    for name in ("prev_hash", "hash"):
        value = line.get(name)
        if not isinstance(value, str) or not _HEX64.match(value):
            return f"field {name!r} is missing or not 64 lowercase hex digits"
    if not isinstance(line.get("time"), str):
        return "field 'time' is missing or not a string"
    return None


def _check(line: dict[str, Any], number: int, prev_seq: int, prev_hash: str) -> str | None:
    """Why line ``number`` (parsed) does not follow a line of ``prev_seq``
    and ``prev_hash``, or None when it does."""
    problem = _field_problem(line)
    if problem is not None:
        return problem
    if line["hash"] != line_hash(line):
        return "its hash does not match its content: the line was edited"
    expected = prev_seq + 1
    if line["seq"] > expected:
        return (
            f"seq {line['seq']} where {expected} was expected: "
            "a line before it was deleted, or lines were reordered"
        )
    if line["seq"] < expected:
        return (
            f"seq {line['seq']} where {expected} was expected: "
            "a line was inserted before it, or lines were reordered"
        )
    if line["prev_hash"] != prev_hash:
        before = f"line {number - 1}" if number > 1 else "the chain's start"
        return (
            f"prev_hash is not the hash of {before}: a line before it was "
            "inserted, deleted or edited and re-hashed"
        )
    return None


def scan_chain(stream: IO[bytes], want: Collection[int] = ()) -> ChainScan:
    """Check the chain read from binary ``stream`` up to its first bad line.

    ``want``: seqs whose hashes to report in ``ChainScan.hashes`` (for seals).
    """
    scan = ChainScan()
    for number, raw in enumerate(stream, start=1):
        if not raw.endswith(b"\n"):
            scan.bad_line, scan.torn = number, raw
            scan.reason = (
                f"torn last line: {len(raw)} bytes without a newline "
                "(a crash during a write, or a write still in progress)"
            )
            return scan
        try:
            line = json.loads(raw)
        except ValueError:
            line = None
        if not isinstance(line, dict):
            scan.bad_line, scan.reason = number, "not a JSON object"
            return scan
        problem = _check(line, number, scan.head_seq, scan.head_hash)
        if problem is not None:
            scan.bad_line, scan.reason = number, problem
            return scan
        scan.lines = number
        scan.head_seq, scan.head_hash, scan.head_time = line["seq"], line["hash"], line["time"]
        scan.good_bytes += len(raw)
        if scan.head_seq in want:
            scan.hashes[scan.head_seq] = scan.head_hash
    return scan


def scan_file(path: Path | str, want: Collection[int] = ()) -> ChainScan:
    """``scan_chain`` of the file at ``path`` (a missing file is an empty
    chain). Raises ``AuditError`` when it cannot be read."""
    try:
        with open(path, "rb") as stream:
            return scan_chain(stream, want)
    except FileNotFoundError:
        return ChainScan()
    except OSError as exc:
        raise AuditError(f"cannot read audit log {path}: {exc}") from exc
