"""What every de-identifier shares: its call shape and its stats base.

Each format's de-identifier is called the same way,

    deidentify_<format>(source, key, policy=None, *, <format's own keywords>)
        -> (de-identified source, <Format>DeidStats)

``key`` is the secret ``DeidKey``, ``policy`` the site's ``DeidPolicy``
(``None``: ``DeidPolicy()``), both checked by ``checked_policy``; the stats
are a ``DeidStats``. The rules themselves: ``dataengine/deid/README.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import ClassVar, Self

from dataengine.deid.keys import DeidKey
from dataengine.deid.policy import DeidPolicy
from dataengine.errors import ConfigError, DeidError

__all__ = ["DeidStats", "checked_policy"]


def checked_policy(key: object, policy: object) -> DeidPolicy:
    """The policy a de-identifier applies: ``policy``, or ``DeidPolicy()``
    when it is ``None``. Raises ``ConfigError`` (field ``deid.key``) when
    ``key`` is not a ``DeidKey``, and ``DeidError`` when ``policy`` is
    neither ``None`` nor a ``DeidPolicy``."""
    if not isinstance(key, DeidKey):
        raise ConfigError(
            "deid.key", f"must be the de-identification DeidKey, got {type(key).__name__}"
        )
    if policy is None:
        return DeidPolicy()
    if not isinstance(policy, DeidPolicy):
        raise DeidError(f"policy must be a DeidPolicy, got {type(policy).__name__}")
    return policy


@dataclass
class DeidStats:
    """Counts of what a de-identifier changed (every field an ``int``).

    A subclass names the pack manifest's counter for each field it reports
    in ``COUNTERS`` (field name -> counter name); fields not named there are
    for callers and tests only.
    """

    COUNTERS: ClassVar[Mapping[str, str]] = {}

    def add(self, other: Self) -> None:
        """Add ``other``'s counts (same class) to these."""
        if type(other) is not type(self):
            raise TypeError(f"cannot add {type(other).__name__} to {type(self).__name__}")
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_counters(self) -> dict[str, int]:
        """Counts under the names the pack manifest uses (``COUNTERS``)."""
        return {counter: getattr(self, name) for name, counter in self.COUNTERS.items()}
