"""Seals: the head of a chain, signed with HMAC-SHA256, in a file of its own.

A seal says "line ``seq`` of this log had hash ``hash``" under a secret key.
Copied to write-once (WORM) storage, it pins every line up to ``seq``: a log
rewritten afterwards, even with every hash recomputed, or cut short, no
longer matches it, and a seal forged without the key fails its HMAC.

The seal file (``LOG.seal-<seq>.json`` beside the log unless told
otherwise) holds one JSON object::

    {"format": "medstream-audit-seal", "version": 1, "log": "<path as given>",
     "seq": N, "hash": "<hash of line N>", "head_time": "<time of line N>",
     "sealed_at": "<UTC ISO 8601>", "key_id": "<16 hex>", "hmac": "<64 hex>"}

``hmac`` is HMAC-SHA256 under the key of the canonical JSON of the object
without ``hmac``. ``key_id`` names the key (the first 16 hex digits of
SHA-256 of ``"medstream-audit-key-id" 0x1f key``), never the key itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from dataengine.audit._canonical import canonical_json, utc_now
from dataengine.audit._chain import AuditError, scan_file

__all__ = [
    "MIN_SEAL_KEY_BYTES",
    "SEAL_FORMAT",
    "check_seal",
    "default_seal_path",
    "load_seal_key",
    "read_seal",
    "seal_key_id",
    "write_seal",
]

_LOG = logging.getLogger(__name__)

SEAL_FORMAT = "medstream-audit-seal"
MIN_SEAL_KEY_BYTES = 32
_FIELDS = ("format", "version", "log", "seq", "hash", "head_time", "sealed_at", "key_id", "hmac")


def seal_key_id(key: bytes) -> str:
    """First 16 hex digits of SHA-256("medstream-audit-key-id" 0x1f key)."""
    return hashlib.sha256(b"medstream-audit-key-id\x1f" + key).hexdigest()[:16]


def load_seal_key(path: Path | str) -> bytes:
    """The HMAC key in file ``path``: hex text (whitespace ignored) or raw
    bytes, at least ``MIN_SEAL_KEY_BYTES`` (32) bytes of secret, e.g. from
    ``openssl rand -hex 32 > audit.key; chmod 600 audit.key``.

    Raises ``AuditError`` when the file cannot be read, is too short, or may
    be read by every user (mode ``o+r``); a file readable by its group is
    accepted with a warning (Kubernetes may mount Secrets so with fsGroup).
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as exc:
        raise AuditError(f"cannot read seal key file {path}: {exc}") from exc
    if mode & stat.S_IROTH:
        raise AuditError(
            f"seal key file {path} may be read by every user (mode {stat.filemode(mode)}): "
            f"chmod 600 {path}"
        )
    if mode & stat.S_IRGRP:
        _LOG.warning("seal key file %s may be read by its group (mode %s)", path,
                     stat.filemode(mode))  # fmt: skip
    text = raw.strip()
    key = raw
    try:
        decoded = bytes.fromhex(text.decode("ascii"))
        if len(decoded) >= MIN_SEAL_KEY_BYTES:
            key = decoded
    except (UnicodeDecodeError, ValueError):
        pass
    if len(key) < MIN_SEAL_KEY_BYTES:
        raise AuditError(
            f"seal key file {path} holds {len(key)} bytes of key; at least "
            f"{MIN_SEAL_KEY_BYTES} are needed (openssl rand -hex 32)"
        )
    return key


def _mac(key: bytes, body: dict[str, Any]) -> str:
    unsigned = {k: v for k, v in body.items() if k != "hmac"}
    return hmac.new(key, canonical_json(unsigned), hashlib.sha256).hexdigest()


def default_seal_path(log: Path | str, seq: int) -> Path:
    """``LOG.seal-<seq>.json`` beside the log (seq zero-padded to 10 digits,
    so that the seals of a log sort by seq)."""
    log = Path(log)
    return log.with_name(f"{log.name}.seal-{seq:010d}.json")


def read_seal(path: Path | str) -> dict[str, Any]:
    """The seal object in ``path``; raises ``AuditError`` when it is not one."""
    try:
        body = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read seal {path}: {exc}") from exc
    if not isinstance(body, dict) or body.get("format") != SEAL_FORMAT:
        raise AuditError(f"{path} is not a {SEAL_FORMAT} file")
    missing = [f for f in _FIELDS if f not in body]
    if missing:
        raise AuditError(f"seal {path} lacks {', '.join(missing)}")
    return body


def check_seal(body: dict[str, Any], key: bytes) -> str | None:
    """Why ``body`` is not a seal made with ``key`` (None when it is)."""
    given = seal_key_id(key)
    if body.get("key_id") != given:
        return (
            f"the seal names key id {body.get('key_id')!r} but the key given is {given!r} "
            "(another key, or a forged seal)"
        )
    mac = body.get("hmac")
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, body)):
        return "its HMAC does not match its content: a forged or altered seal"
    if not isinstance(body.get("seq"), int) or not isinstance(body.get("hash"), str):
        return "seq or hash missing"
    return None


def write_seal(
    log: Path | str,
    key: bytes,
    out: Path | str | None = None,
    *,
    out_dir: Path | str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Seal the head of the chain in ``log`` with ``key``; return the seal
    file's path and its content.

    The chain is checked first; a broken one is not sealed (``AuditError``
    naming the line). A last line still being written (no newline yet) is
    left for the next seal. The file is ``out``; else ``LOG.seal-<seq>.json``
    (``default_seal_path``) in ``out_dir`` (created if need be: a WORM
    mount, say) or beside the log. It is created, never overwritten: an
    existing seal of the same seq and hash is returned as it is (sealing an
    idle log daily is harmless), one of other content raises ``AuditError``.
    """
    if out is not None and out_dir is not None:
        raise AuditError("give a seal file (out) or a folder for it (out_dir), not both")
    log = Path(log)
    if not log.is_file():
        raise AuditError(f"no audit log at {log}")
    if len(key) < MIN_SEAL_KEY_BYTES:
        raise AuditError(f"a seal key needs at least {MIN_SEAL_KEY_BYTES} bytes")
    scan = scan_file(log)
    if not scan.ok and scan.torn is None:
        raise AuditError(
            f"audit log {log} is broken at line {scan.bad_line}: {scan.reason}; not sealed"
        )
    body: dict[str, Any] = {
        "format": SEAL_FORMAT,
        "version": 1,
        "log": str(log),
        "seq": scan.head_seq,
        "hash": scan.head_hash,
        "head_time": scan.head_time,
        "sealed_at": utc_now(),
        "key_id": seal_key_id(key),
    }
    body["hmac"] = _mac(key, body)
    path = Path(out) if out is not None else default_seal_path(log, scan.head_seq)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        path = Path(out_dir) / path.name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        old = read_seal(path)
        if (old["seq"], old["hash"]) == (body["seq"], body["hash"]):
            _LOG.info("%s already seals seq %d of %s", path, body["seq"], log)
            return path, old
        raise AuditError(f"{path} exists and seals other content; not overwritten") from None
    except OSError as exc:
        raise AuditError(f"cannot create seal {path}: {exc}") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(json.dumps(body, indent=2, sort_keys=True).encode("utf-8") + b"\n")
        f.flush()
        os.fsync(f.fileno())
    _LOG.info("sealed %s at seq %d (%s) -> %s", log, body["seq"], body["hash"][:16], path)
    return path, body
