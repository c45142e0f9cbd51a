"""Audit logs written through the real ``AuditLog`` for the tests to check
and tamper with, and a seal key file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from dataengine.audit import AuditLog, canonical_json, ids_digest, line_hash

LINES = 8


def engine_like_lines(count: int = LINES) -> list[dict[str, Any]]:
    """Fields of the kind the engine writes: one stream, a describe, a refusal."""
    actions = ["StreamSamples.start", "StreamSamples.end", "DescribeDataset", "refused"]
    return [
        {
            "principal": f"user-{i % 3}",
            "action": actions[i % len(actions)],
            "dataset": "ct-chest",
            "sample_count": 4 * i,
            "ids_digest": ids_digest(range(i, i + 4)),
            "request_id": f"req-{i:04d}",
            "peer": f"ipv4:10.0.0.{i}:5{i:04d}",
        }
        for i in range(count)
    ]


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """A log of ``LINES`` lines written by ``AuditLog`` (fsync)."""
    path = tmp_path / "engine-audit.jsonl"
    with AuditLog.open(path, "fsync") as log:
        for fields in engine_like_lines():
            log.append(**fields)
    return path


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.key"
    path.write_text(os.urandom(32).hex() + "\n")
    path.chmod(0o600)
    return path


def read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def rehash(line: dict[str, Any]) -> bytes:
    """``line`` with its hash recomputed, as a forger with the code would."""
    line = dict(line)
    line["hash"] = line_hash(line)
    return canonical_json(line) + b"\n"


def parse(raw: bytes) -> dict[str, Any]:
    body = json.loads(raw)
    assert isinstance(body, dict)
    return body
