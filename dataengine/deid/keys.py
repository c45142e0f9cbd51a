"""The secret key of de-identification, and the keyed functions built on it.

Every replacement value (remapped UIDs, pseudonyms) is an HMAC-SHA256 of the
original under a secret key, so the mapping is deterministic per key (links
between files and between studies survive) but cannot be reversed or
recomputed without the key. The key never lives in source code: it comes
from a file or an environment variable (``load_key``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from dataengine.errors import ConfigError

__all__ = [
    "DEFAULT_KEY_ENV",
    "MIN_KEY_BYTES",
    "DeidKey",
    "date_shift_days",
    "load_key",
    "pseudonym",
    "remap_uid",
]

_LOG = logging.getLogger(__name__)

MIN_KEY_BYTES = 16
DEFAULT_KEY_ENV = "MEDSTREAM_DEID_KEY"
# Public on purpose, so that it is never mistaken for a secret: only for demos
# on synthetic data (``insecure_demo=True``).
_DEMO_SECRET = b"medstream-INSECURE-demo-key-synthetic-data-only"


@dataclass(frozen=True)
class DeidKey:
    """A de-identification secret of at least ``MIN_KEY_BYTES`` bytes.

    ``repr`` never shows the secret; ``key_id`` (a short hash of it) names the
    key in manifests and logs.
    """

    secret: bytes = field(repr=False)
    insecure: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes | bytearray):
            raise ConfigError("deid.key", f"must be bytes, got {type(self.secret).__name__}")
        if len(self.secret) < MIN_KEY_BYTES:
            raise ConfigError(
                "deid.key",
                f"must be at least {MIN_KEY_BYTES} bytes of secret, got {len(self.secret)}",
            )
        object.__setattr__(self, "secret", bytes(self.secret))

    @property
    def key_id(self) -> str:
        """First 16 hex digits of SHA-256("medstream-key-id" + secret)."""
        return hashlib.sha256(b"medstream-key-id\x1f" + self.secret).hexdigest()[:16]

    def digest(self, domain: str, value: str) -> bytes:
        """HMAC-SHA256 of ``value`` in a named ``domain`` (32 bytes)."""
        msg = domain.encode() + b"\x1f" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self.secret, msg, hashlib.sha256).digest()


def remap_uid(key: DeidKey, uid: str) -> str:
    """Replace a DICOM UID by ``2.25.<decimal of the first 16 HMAC bytes>``.

    The result is a valid UID (digits and dots, no leading zeros, at most 44
    characters) and equal for equal inputs under the same key.
    """
    clean = uid.strip().rstrip("\x00").strip()
    value = int.from_bytes(key.digest("uid", clean)[:16], "big")
    return f"2.25.{value}"


def pseudonym(key: DeidKey, kind: str, value: str) -> str:
    """A 16-hex-digit keyed pseudonym of ``value`` in namespace ``kind``
    (e.g. ``"study"``, ``"patient"``)."""
    return key.digest(f"pseudonym:{kind}", value).hex()[:16]


def date_shift_days(key: DeidKey, patient_id: str, max_days: int) -> int:
    """The number of days to **add** to every date of one patient: a keyed
    value in ``[-max_days, -1]`` (dates always move back in time, never by 0,
    so a shifted date is never in the future and never equals the original).

    Derived from HMAC-SHA256(key, patient id) alone, so one patient gets the
    same shift in every file, study and pack run under the same key, and
    intervals between that patient's dates are kept exactly. ``patient_id``
    is the original (pre-de-identification) id, surrounding spaces and NULs
    ignored; an empty id is a valid (shared) value. Raises ``ConfigError``
    when ``max_days`` is not an integer >= 1.
    """
    if not isinstance(max_days, int) or isinstance(max_days, bool) or max_days < 1:
        raise ConfigError("deid.max_date_shift_days", f"must be an integer >= 1, got {max_days!r}")
    clean = patient_id.strip().strip("\x00").strip()
    value = int.from_bytes(key.digest("date-shift", clean)[:8], "big")
    return -(1 + value % max_days)


def _parse_secret(raw: bytes) -> bytes:
    """Hex text (whitespace ignored) when it is hex, else the raw bytes."""
    text = raw.strip()
    try:
        decoded = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return raw
    return decoded if len(decoded) >= MIN_KEY_BYTES else raw


def load_key(
    path: Path | None = None,
    env_var: str = DEFAULT_KEY_ENV,
    insecure_demo: bool = False,
) -> DeidKey:
    """Load the de-identification key.

    Order: the file at ``path`` (hex text or raw bytes, at least 16 bytes), then
    the environment variable ``env_var`` (hex or plain text), then, only when
    ``insecure_demo`` is true, a fixed public demo key (logged as a warning).
    Raises ``ConfigError`` when none is available.
    """
    if path is not None:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError("deid.key_file", f"cannot read {path}: {exc}") from exc
        return DeidKey(_parse_secret(raw))
    env_value = os.environ.get(env_var)
    if env_value:
        return DeidKey(_parse_secret(env_value.encode("utf-8")))
    if insecure_demo:
        _LOG.warning(
            "using the PUBLIC insecure demo de-identification key: fine for synthetic "
            "data, never for real patients (set %s or pass a key file)",
            env_var,
        )
        return DeidKey(_DEMO_SECRET, insecure=True)
    raise ConfigError(
        "deid.key",
        f"no de-identification key: set {env_var} to at least {MIN_KEY_BYTES} bytes "
        f"(e.g. `export {env_var}=$(openssl rand -hex 32)`), or pass a key file; "
        "for synthetic demo data only, use the insecure demo key",
    )
