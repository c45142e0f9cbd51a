"""``verify_chain``: is this log intact, and does it still match its seals?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataengine.audit._chain import AuditError, scan_file
from dataengine.audit._seal import check_seal, read_seal
from dataengine.errors import ConfigError

__all__ = ["VerifyResult", "verify_chain"]

SealArg = Path | str | dict[str, Any]


@dataclass(frozen=True)
class VerifyResult:
    """The verdict on one log.

    ``ok``: the chain is intact and matches every seal given. ``lines``:
    complete lines that chain correctly (all of them when ``ok``);
    ``head_seq`` / ``head_hash``: the last of those. ``bad_line``: the first
    bad line, 1-based (for a log cut short after a seal: the first line the
    seal covers that is missing), and ``reason`` why; ``seal`` names the seal
    file concerned when a seal is the reason. ``seals_checked``: seals whose
    HMAC and head matched.
    """

    path: str
    ok: bool
    lines: int
    head_seq: int
    head_hash: str
    bad_line: int | None = None
    reason: str | None = None
    seal: str | None = None
    seals_checked: int = 0
    seals: list[str] = field(default_factory=list)

    def format(self) -> str:
        """One line for people: ``OK ...`` or ``BROKEN at line N: why``."""
        if self.ok:
            sealed = f", {self.seals_checked} seal(s) match" if self.seals_checked else ""
            return (
                f"{self.path}: OK, {self.lines} lines, head seq {self.head_seq} "
                f"{self.head_hash[:16]}{sealed}"
            )
        where = f"line {self.bad_line}" if self.bad_line is not None else "seal"
        via = f" (seal {self.seal})" if self.seal else ""
        return f"{self.path}: BROKEN at {where}{via}: {self.reason}"


def _load(seal: SealArg) -> tuple[str, dict[str, Any]]:
    if isinstance(seal, dict):
        return "<seal>", seal
    return str(seal), read_seal(seal)


def verify_chain(
    path: Path | str,
    seal: SealArg | Sequence[SealArg] | None = None,
    key: bytes | None = None,
) -> VerifyResult:
    """Check every line of the log at ``path`` (see ``scan_chain``: an
    edited, deleted, inserted or moved line, a torn last line) and, for each
    seal given (a seal file's path, its parsed content, or a list of them),
    that its HMAC under ``key`` holds (a forged seal) and that the log still
    has line ``seq`` with the sealed hash (a log cut short or rewritten after
    the seal). Never raises for a bad log; raises ``AuditError`` for a
    missing log or unreadable seal file and ``ConfigError`` for a seal
    without a key."""
    log = Path(path)
    if not log.is_file():
        raise AuditError(f"no audit log at {log}")
    seals: list[SealArg] = []
    if isinstance(seal, Path | str | dict):
        seals = [seal]
    elif seal is not None:
        seals = list(seal)
    if seals and key is None:
        raise ConfigError("audit.key_file", "a seal is checked with its key: give the key file")
    loaded = [_load(s) for s in seals]
    want = {b["seq"] for _, b in loaded if isinstance(b.get("seq"), int)}
    scan = scan_file(log, want)
    base: dict[str, Any] = {
        "path": str(log),
        "lines": scan.lines,
        "head_seq": scan.head_seq,
        "head_hash": scan.head_hash,
        "seals": [name for name, _ in loaded],
    }
    # Seals first: a forged seal is named whatever the log holds.
    for name, body in loaded:
        why = check_seal(body, key or b"")
        if why is not None:
            return VerifyResult(ok=False, reason=f"seal {name}: {why}", seal=name, **base)
    if not scan.ok:
        return VerifyResult(ok=False, bad_line=scan.bad_line, reason=scan.reason, **base)
    checked = 0
    for name, body in sorted(loaded, key=lambda nb: nb[1]["seq"]):
        seq = body["seq"]
        if seq == 0:
            checked += 1
            continue
        if seq > scan.head_seq:
            reason = (
                f"the log ends at seq {scan.head_seq} but the seal of {body.get('sealed_at')} "
                f"covers seq {seq}: lines were cut from the end after the seal"
            )
            return VerifyResult(ok=False, bad_line=scan.lines + 1, reason=reason, seal=name, **base)
        if scan.hashes.get(seq) != body["hash"]:
            reason = (
                f"the hash of seq {seq} differs from the seal of {body.get('sealed_at')}: "
                f"lines up to {seq} were rewritten after the seal"
            )
            return VerifyResult(ok=False, bad_line=seq, reason=reason, seal=name, **base)
        checked += 1
    return VerifyResult(ok=True, seals_checked=checked, **base)
