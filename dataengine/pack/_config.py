"""Configuration and results of a pack run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataengine.configs import check, check_int, setting
from dataengine.deid.keys import DeidKey
from dataengine.deid.policy import DeidPolicy

__all__ = ["PackConfig", "PackSummary", "QuarantineEntry"]


def _default_workers() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class PackConfig:
    """How to pack. ``key`` is the de-identification key
    (``dataengine.deid.load_key``; raw ``bytes`` are accepted and wrapped);
    ``deid`` the de-identification policy (date mode, kept private tags,
    burned-in annotation; ``dataengine.deid.DeidPolicy``). Each other
    setting's help says its meaning and unit; ``dataengine pack`` has one
    flag per setting (``dataengine.configs.add_flags``). Errors name the
    field as ``pack.FIELD``.
    """

    key: DeidKey
    shard_samples: int = setting(64, help="studies (samples) per shard")
    workers: int = setting(
        factory=_default_workers,
        help="worker processes; 1 runs in the calling process (default: cores)",
    )
    name: str | None = setting(None, help="dataset name (default: the dataset directory's name)")
    max_file_bytes: int = setting(
        2 << 30, help="larger input files are quarantined, not read; bytes"
    )
    deid: DeidPolicy = field(default_factory=DeidPolicy)
    index_file: Path | None = setting(
        None,
        help="CSV/JSONL index linking files to studies (default: one folder per study; "
        "see dataengine/pack/_discover.py)",
        flag="--index",
        metavar="FILE",
    )
    report_json_field: str = setting(
        "report",
        help="JSON field / XML element holding a report's text; a dotted path (a.b) "
        "walks nested objects",
        metavar="NAME",
    )

    def __post_init__(self) -> None:
        if isinstance(self.index_file, str):
            object.__setattr__(self, "index_file", Path(self.index_file))
        field_path = self.report_json_field
        check(
            isinstance(field_path, str) and all(field_path.split(".")),
            "pack.report_json_field",
            f"must be a name or dotted path, got {field_path!r}",
        )
        check(
            isinstance(self.deid, DeidPolicy),
            "pack.deid",
            f"must be a DeidPolicy, got {type(self.deid).__name__}",
        )
        if isinstance(self.key, bytes | bytearray):
            object.__setattr__(self, "key", DeidKey(bytes(self.key)))
        check(
            isinstance(self.key, DeidKey),
            "pack.key",
            f"must be a DeidKey, got {type(self.key).__name__}",
        )
        for name in ("shard_samples", "workers", "max_file_bytes"):
            check_int(getattr(self, name), f"pack.{name}", 1)
        check(
            self.name is None or (bool(self.name.strip()) and "/" not in self.name),
            "pack.name",
            f"must be a non-empty name without '/', got {self.name!r}",
        )


@dataclass(frozen=True)
class QuarantineEntry:
    """One input that was not packed. ``path`` is relative to the raw folder;
    ``kind`` classifies the reason (``decode``, ``deid``,
    ``burned_in_annotation``, ``empty_file``, ``too_large``,
    ``unsupported_type``, ``read_error``, ``no_usable_files``, ``internal``);
    ``exception`` is the type name of the error, if any."""

    path: str
    kind: str
    reason: str
    exception: str = ""

    def to_json_dict(self) -> dict[str, str]:
        return {
            "path": self.path,
            "kind": self.kind,
            "reason": self.reason,
            "exception": self.exception,
        }


@dataclass(frozen=True)
class PackSummary:
    """Outcome of ``pack_dataset`` (counts; sizes in bytes; time in seconds)."""

    name: str
    dataset_dir: str
    studies_seen: int
    studies_packed: int
    shards: int
    bytes: int
    files_decoded: dict[str, int]
    quarantined: dict[str, int]
    redactions: dict[str, int]
    deid: dict[str, Any]
    elapsed_s: float

    @property
    def samples(self) -> int:
        return self.studies_packed

    @property
    def studies_per_s(self) -> float:
        return self.studies_seen / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def format(self) -> str:
        def kv(d: dict[str, int]) -> str:
            return ", ".join(f"{k}={v}" for k, v in sorted(d.items())) or "none"

        lines = [
            f"packed dataset {self.name!r} -> {self.dataset_dir}",
            f"  studies: {self.studies_seen} seen, {self.studies_packed} packed "
            f"({self.samples} samples in {self.shards} shard{'' if self.shards == 1 else 's'}, "
            f"{self.bytes / 1e6:.2f} MB)",
            f"  files decoded: {kv(self.files_decoded)}",
            f"  quarantined: {kv(self.quarantined)} (see quarantine.jsonl)",
            f"  redactions: {kv(self.redactions)}",
            f"  de-identification: profile {self.deid.get('profile')}, "
            f"dates {'removed' if self.deid.get('date_mode') == 'remove' else 'shifted'}; "
            f"DICOM elements "
            f"{self.deid.get('dicom_elements_removed', 0)} removed, "
            f"{self.deid.get('dicom_elements_emptied', 0)} emptied, "
            f"{self.deid.get('dicom_elements_replaced', 0)} replaced; "
            f"{self.deid.get('uids_remapped', 0)} UIDs remapped; "
            f"{self.deid.get('dates_shifted', 0)} dates shifted, "
            f"{self.deid.get('dates_removed', 0)} removed; private tags "
            f"{self.deid.get('private_tags_removed', 0)} removed, "
            f"{self.deid.get('private_tags_kept', 0)} kept; EDF "
            f"{self.deid.get('edf_annotations_redacted', 0)} annotations redacted, "
            f"{self.deid.get('edf_labels_replaced', 0)} labels replaced",
            f"  time: {self.elapsed_s:.2f} s ({self.studies_per_s:.1f} studies/s)",
        ]
        return "\n".join(lines)
