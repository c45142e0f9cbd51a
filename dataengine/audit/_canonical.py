"""The canonical form of an audit line and its hash.

A line's ``hash`` is the SHA-256 (64 lowercase hex digits) of the canonical
JSON of the line without its ``hash`` field: keys sorted, no spaces
(separators ``,`` and ``:``), non-ASCII characters kept as UTF-8, NaN and
infinities refused. The line includes ``prev_hash``, so each hash covers the
whole chain before it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["GENESIS", "RESERVED", "canonical_json", "line_hash", "utc_now"]

GENESIS = "0" * 64
"""``prev_hash`` of the first line of a chain."""

RESERVED = frozenset({"time", "seq", "prev_hash", "hash"})
"""Fields the chain writes itself; a caller may not set them."""


def canonical_json(obj: Mapping[str, Any]) -> bytes:
    """``obj`` as canonical JSON, UTF-8 bytes (no trailing newline).

    Raises ``ValueError`` for NaN or infinite floats and ``TypeError`` for
    values JSON cannot hold."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)  # fmt: skip
    return text.encode("utf-8")


def line_hash(line: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``line`` without its ``hash``."""
    body = {k: v for k, v in line.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def utc_now() -> str:
    """The current time, UTC, ISO 8601 with microseconds: ``2026-11-30T10:18:54.123456Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
