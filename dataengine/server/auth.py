"""Who may call the engine: principals, their tokens' digests, their grants.

``--auth-file FILE`` is JSON, one entry per principal::

    {"principals": [
      {"name": "trainer-ct", "token_sha256": "<64 hex>",
       "datasets": ["ct-chest-v1"], "roles": ["stream", "describe"]},
      {"name": "ops", "cert_subject": "CN=ops.hospital.example",
       "datasets": "*", "roles": ["stats"]}
    ]}

(a bare list of entries is accepted too). ``token_sha256`` is the SHA-256 of
the token, hex: the file never holds a token (an entry with a ``token`` key
is refused). ``cert_subject`` (``CN=...``) makes an mTLS client
certificate's common name the principal instead. ``datasets`` is a list of
dataset names or ``"*"`` (every dataset). ``roles`` are ``stream``
(StreamSamples, AttachSharedMemory, OpenDataChannel), ``describe``
(DescribeDataset), ``stats`` (GetStats) and ``admin`` (every role).

Clients send ``authorization: Bearer <token>``; the token's digest is
compared with every entry's in constant time (``hmac.compare_digest``, no
early exit). The file is read at start and again on SIGHUP
(``AccessGate.reload``): a file that fails to load keeps the old table.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataengine.errors import ConfigError

__all__ = [
    "ROLES",
    "AuthTable",
    "Principal",
    "bearer_token",
    "token_digest",
]

ROLES = ("stream", "describe", "stats", "admin")
_FIELD = "server.auth_file"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KEYS = {"name", "token_sha256", "cert_subject", "datasets", "roles"}


def token_digest(token: str) -> str:
    """The hex SHA-256 of ``token`` (what the auth file holds)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry;
    None when there is none, "" when the entry is malformed."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""
    return None


@dataclass(frozen=True)
class Principal:
    """One caller: ``datasets`` None means every dataset."""

    name: str
    roles: frozenset[str]
    datasets: frozenset[str] | None
    token_sha256: bytes | None = None
    cert_cn: str | None = None

    def has_role(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles

    def may_read(self, dataset: str) -> bool:
        return self.datasets is None or dataset in self.datasets


def _entry(raw: Any, index: int) -> Principal:
    where = f"principals[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(_FIELD, f"{where} must be an object")
    if "token" in raw:
        raise ConfigError(
            _FIELD, f"{where} holds a token: store only its SHA-256 (token_sha256), never the token"
        )
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(_FIELD, f"{where}: unknown keys {unknown} (allowed: {sorted(_KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(_FIELD, f"{where}.name must be a non-empty string")
    digest = raw.get("token_sha256")
    if digest is not None and (not isinstance(digest, str) or not _HEX64.match(digest.lower())):
        raise ConfigError(_FIELD, f"{where} ({name}): token_sha256 must be 64 hex digits")
    subject = raw.get("cert_subject")
    cn = None
    if subject is not None:
        if not isinstance(subject, str) or not subject.startswith("CN=") or len(subject) < 4:
            raise ConfigError(_FIELD, f"{where} ({name}): cert_subject must read 'CN=<name>'")
        cn = subject[3:]
    if digest is None and cn is None:
        raise ConfigError(_FIELD, f"{where} ({name}): needs token_sha256 or cert_subject")
    roles = raw.get("roles")
    if not isinstance(roles, list) or not roles or not set(roles) <= set(ROLES):
        raise ConfigError(_FIELD, f"{where} ({name}): roles must be a non-empty list of {ROLES}")
    datasets = raw.get("datasets")
    granted: frozenset[str] | None
    if datasets == "*":
        granted = None
    elif isinstance(datasets, list) and all(isinstance(d, str) and d for d in datasets):
        granted = frozenset(datasets)
    else:
        raise ConfigError(_FIELD, f"{where} ({name}): datasets must be a list of names or '*'")
    return Principal(
        name=name,
        roles=frozenset(roles),
        datasets=granted,
        token_sha256=bytes.fromhex(digest) if digest is not None else None,
        cert_cn=cn,
    )


@dataclass(frozen=True)
class AuthTable:
    """The principals of one auth file."""

    principals: tuple[Principal, ...]

    @classmethod
    def load(cls, path: Path) -> AuthTable:
        """Read and check ``path``; ``ConfigError`` (server.auth_file) names
        what is wrong. The message never quotes the file's digests."""
        try:
            body = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(_FIELD, f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(_FIELD, f"{path} is not JSON: {exc}") from None
        return cls.of(body.get("principals") if isinstance(body, Mapping) else body)

    @classmethod
    def of(cls, entries: Any) -> AuthTable:
        if not isinstance(entries, Sequence) or isinstance(entries, str):
            raise ConfigError(_FIELD, "must hold a list of principals")
        principals = tuple(_entry(e, i) for i, e in enumerate(entries))
        names = [p.name for p in principals]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(_FIELD, f"principals named twice: {dupes}")
        return cls(principals)

    def by_token(self, token: str) -> Principal | None:
        """The principal whose digest matches ``token``'s. Every entry is
        compared, in constant time each, whatever matched before."""
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found = None
        for p in self.principals:
            if p.token_sha256 is not None and hmac.compare_digest(digest, p.token_sha256):
                found = p
        return found

    def by_cert(self, common_names: Iterable[str]) -> Principal | None:
        """The principal named by a verified client certificate's CN."""
        names = set(common_names)
        for p in self.principals:
            if p.cert_cn is not None and p.cert_cn in names:
                return p
        return None
