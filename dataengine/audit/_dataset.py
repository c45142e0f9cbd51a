"""The dataset's own chain: ``DATASET_DIR/audit.jsonl``.

``pack``, ``prepare`` and ``verify`` each append one line to the chain of
the dataset they touch, when they end (``dataset_audit``): who ran it (OS
user, host, process id, the command's name and option names, never option
values or paths), the medstream version, the de-identification profile and
key id (never the key), the SHA-256 of ``manifest.json`` as it was then, and
the result (``ok``, ``failed`` or ``interrupted``, the exception's type, and
the run's counts). Lines go through ``AuditLog`` (fsync, one writer at a
time: parallel prepare parts wait for each other's line), so the file is a
chain that ``dataengine audit verify DATASET_DIR/audit.jsonl`` checks.

Writing the line never changes the operation's outcome: a dataset folder
that is read-only (a serving mount) or a broken chain is logged as a
warning and the line is skipped.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataengine import __version__
from dataengine.audit._log import AuditLog
from dataengine.errors import DataEngineError

__all__ = [
    "DATASET_AUDIT_NAME",
    "DatasetEvent",
    "dataset_audit",
    "manifest_facts",
    "record_dataset_event",
    "run_context",
]

_LOG = logging.getLogger(__name__)

DATASET_AUDIT_NAME = "audit.jsonl"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return f"uid:{os.getuid()}"


def _command(argv: list[str]) -> str:
    """The program's name, its subcommand and the option names given, with
    no value: values may be paths, and paths may name patients."""
    if not argv:
        return ""
    words = [Path(argv[0]).name]
    rest = argv[1:]
    if rest and not rest[0].startswith("-"):
        words.append(rest[0])
    words += [a.split("=", 1)[0] for a in rest if a.startswith("-")]
    return " ".join(words)


def run_context() -> dict[str, Any]:
    """Who runs this process and what it is: ``user``, ``host``, ``pid``,
    ``command`` (see ``_command``), ``version``."""
    return {
        "user": _user(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": _command(sys.argv),
        "version": __version__,
    }


def manifest_facts(dataset_dir: Path | str) -> dict[str, Any]:
    """``manifest_sha256``, ``dataset``, ``profile`` and ``key_id`` of the
    dataset's ``manifest.json`` (those it has; nothing when it has none)."""
    path = Path(dataset_dir) / "manifest.json"
    try:
        data = path.read_bytes()
        body = json.loads(data)
    except (OSError, ValueError):
        return {}
    facts: dict[str, Any] = {"manifest_sha256": hashlib.sha256(data).hexdigest()}
    if isinstance(body, dict):
        if isinstance(body.get("name"), str):
            facts["dataset"] = body["name"]
        deid = (body.get("pack") or {}).get("deid") if isinstance(body.get("pack"), dict) else None
        if isinstance(deid, dict):
            for name in ("profile", "key_id"):
                if name in deid:
                    facts[name] = deid[name]
    return facts


def record_dataset_event(
    dataset_dir: Path | str, action: str, **fields: Any
) -> dict[str, Any] | None:
    """Append ``{action, run_context(), fields}`` to ``DATASET_DIR/audit.jsonl``
    and return the line; None (and a warning) when it could not be written.
    Nothing is written when ``dataset_dir`` is not a directory."""
    folder = Path(dataset_dir)
    if not folder.is_dir():
        _LOG.debug("no dataset folder %s: no audit line for %s", folder, action)
        return None
    try:
        with AuditLog.open(folder / DATASET_AUDIT_NAME, "fsync", wait=True) as log:
            return log.append(**{"action": action, **run_context(), **fields})
    except (OSError, DataEngineError, ValueError, TypeError) as exc:
        _LOG.warning("audit line for %s not written to %s: %s", action, folder, exc)
        return None


@dataclass
class DatasetEvent:
    """The line ``dataset_audit`` will write: ``fields`` to add, and
    ``result`` (``ok`` unless set, ``failed`` / ``interrupted`` on an exception)."""

    fields: dict[str, Any] = field(default_factory=dict)
    result: str | None = None

    def update(self, **fields: Any) -> None:
        self.fields.update(fields)


@contextmanager
def dataset_audit(dataset_dir: Path | str, action: str, **fields: Any) -> Iterator[DatasetEvent]:
    """Around one operation on a dataset: on the way out, append one line
    with ``fields``, what the block added (``event.update``), the
    manifest's facts (``manifest_facts``, after the block), and ``result``:
    ``event.result`` or ``ok``; ``failed`` with ``error`` (the exception's
    type name, never its message) when the block raised; ``interrupted``
    on KeyboardInterrupt. The exception goes on as it was."""
    event = DatasetEvent(dict(fields))
    try:
        yield event
    except BaseException as exc:
        result = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        line = {**manifest_facts(dataset_dir), **event.fields}
        record_dataset_event(dataset_dir, action, **line, result=result, error=type(exc).__name__)
        raise
    line = {**manifest_facts(dataset_dir), **event.fields}
    record_dataset_event(dataset_dir, action, **line, result=event.result or "ok")
