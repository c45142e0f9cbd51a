"""The de-identification policy: the choices an operator makes per pack run.

Everything else about the profile is fixed (``dataengine/deid/README.md``);
these four knobs are the options PS3.15 Annex E leaves to the site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dataengine.errors import ConfigError

__all__ = ["DATE_MODES", "MAX_DATE_SHIFT_LIMIT", "DeidPolicy", "PrivateTagRef", "parse_private_tag"]

DATE_MODES = ("shift", "remove")
# 100 years: a larger shift only makes dates absurd, never safer.
MAX_DATE_SHIFT_LIMIT = 36_500

_PRIVATE_RE = re.compile(r"^\s*([0-9A-Fa-f]{4})\s*,(.+),\s*([0-9A-Fa-f]{2})\s*$")


@dataclass(frozen=True)
class PrivateTagRef:
    """A private element named the way that survives between files:
    ``group`` (odd), the private creator string, and the element ``offset``
    (the low byte ``EE`` of ``(gggg,xxEE)``; the block byte ``xx`` is
    assigned per file by whoever wrote it, so it is not part of the name)."""

    group: int
    creator: str
    offset: int

    def __str__(self) -> str:
        return f"{self.group:04X},{self.creator},{self.offset:02X}"


def parse_private_tag(text: str) -> PrivateTagRef:
    """Parse ``"GGGG,CREATOR,EE"`` (hex group, private creator, hex element
    offset; e.g. ``"0019,GEMS_ACQU_01,10"``). The creator is compared after
    stripping surrounding spaces and NULs, case-sensitively (as the standard
    says). Raises ``ConfigError`` naming ``deid.keep_private``."""
    if not isinstance(text, str):
        raise ConfigError("deid.keep_private", f"entries must be strings, got {text!r}")
    m = _PRIVATE_RE.match(text)
    if m is None:
        raise ConfigError(
            "deid.keep_private",
            f"{text!r} is not 'GGGG,CREATOR,EE' (e.g. '0019,GEMS_ACQU_01,10')",
        )
    group = int(m.group(1), 16)
    creator = m.group(2).strip(" \x00")
    offset = int(m.group(3), 16)
    if group % 2 == 0 or group <= 0x0008:
        raise ConfigError(
            "deid.keep_private", f"{text!r}: group {group:04X} is not a private (odd) group"
        )
    if not creator:
        raise ConfigError("deid.keep_private", f"{text!r}: the private creator is empty")
    return PrivateTagRef(group, creator, offset)


@dataclass(frozen=True)
class DeidPolicy:
    """Site choices for de-identification.

    ``date_mode``: ``"shift"`` (default) moves every date of one patient back
    by the same keyed number of days (``keys.date_shift_days``; PS3.15 option
    "Retain Longitudinal Temporal Information with Modified Dates"), or
    ``"remove"`` empties/removes every date and time.
    ``max_date_shift_days``: the largest shift, days (1..36500).
    ``keep_private``: private elements to keep, each ``"GGGG,CREATOR,EE"``
    (PS3.15 "Retain Safe Private Option"; the operator vouches they hold no
    PHI). Every other private element is removed.
    ``allow_burned_in``: pack images whose ``BurnedInAnnotation`` (or
    ``RecognizableVisualFeatures``) is ``YES`` instead of refusing them.
    """

    date_mode: str = "shift"
    max_date_shift_days: int = 365
    keep_private: tuple[str, ...] = ()
    allow_burned_in: bool = False

    def __post_init__(self) -> None:
        if self.date_mode not in DATE_MODES:
            raise ConfigError(
                "deid.date_mode", f"must be one of {', '.join(DATE_MODES)}, got {self.date_mode!r}"
            )
        days = self.max_date_shift_days
        if (
            not isinstance(days, int)
            or isinstance(days, bool)
            or not 1 <= days <= MAX_DATE_SHIFT_LIMIT
        ):
            raise ConfigError(
                "deid.max_date_shift_days",
                f"must be an integer in [1, {MAX_DATE_SHIFT_LIMIT}], got {days!r}",
            )
        if isinstance(self.keep_private, str):
            raise ConfigError(
                "deid.keep_private",
                f"must be a sequence of strings, got the string {self.keep_private!r}",
            )
        try:
            entries = tuple(self.keep_private)
        except TypeError as exc:
            raise ConfigError(
                "deid.keep_private", f"must be a sequence of strings, got {self.keep_private!r}"
            ) from exc
        refs = [parse_private_tag(e) for e in entries]
        object.__setattr__(self, "keep_private", tuple(str(r) for r in refs))
        if not isinstance(self.allow_burned_in, bool):
            raise ConfigError(
                "deid.allow_burned_in", f"must be a bool, got {self.allow_burned_in!r}"
            )

    @property
    def private_refs(self) -> frozenset[PrivateTagRef]:
        """``keep_private`` parsed."""
        return frozenset(parse_private_tag(e) for e in self.keep_private)

    def describe(self) -> dict[str, object]:
        """The policy as plain JSON values (for manifests)."""
        return {
            "date_mode": self.date_mode,
            "max_date_shift_days": self.max_date_shift_days,
            "keep_private": list(self.keep_private),
            "allow_burned_in": self.allow_burned_in,
        }
